"""Resolving a student model spec to a local folder that transformers can train.

A spec is one of: the bundled name (SmolLM2-135M-Instruct, shipped as a GGUF, see models.bundled), a local
folder, a local `.gguf` file, or a hub id that is already in the local cache.
Nothing here downloads: the studio must work offline, so a missing model is a clear error instead.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from models import chat_templates
from models.bundled import smollm2_gguf
from models.chat_templates import read_model_json
from models.errors import ModelError

BUNDLED_STUDENT = "smollm2-135m-instruct"
BASE_STUDENT = "gemma-3-270m"  # the default student: Gemma 3 270M base, taught to chat by the teacher
TRUST_ENV = "DISTILL_TRUST_REMOTE_CODE"  # comma-separated model specs whose own Python code may run
log = logging.getLogger(__name__)

# SmolLM2-Instruct's own template (the one on its hub card). The bundled GGUF carries it, but a
# GGUF without `tokenizer.chat_template` would otherwise give a tokenizer that cannot render chats.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def resolve_student(spec: str, models_dir: Path) -> Path:
    """Return a local folder holding a safetensors causal LM (config.json + weights + tokenizer).

    The bundled GGUF is materialised once under `models_dir`; later calls reuse that folder.
    Raises ModelError (a StudioError) with a fix when the spec cannot be used offline.
    """
    spec = (spec or "").strip() or BUNDLED_STUDENT
    if spec.lower() == BUNDLED_STUDENT:
        return materialise_gguf(bundled_gguf_path(), Path(models_dir) / BUNDLED_STUDENT, SMOLLM2_CHAT_TEMPLATE)
    if spec.lower() == BASE_STUDENT:
        return materialise_gguf(base_student_gguf(), Path(models_dir) / BASE_STUDENT)
    local = Path(spec).expanduser()
    if local.is_file() and local.suffix == ".gguf":
        return materialise_gguf(local, Path(models_dir) / local.stem.lower())
    if local.exists():
        return check_model_folder(local)
    if _looks_like_path(spec):
        raise ModelError(f"student path {spec} does not exist; pass an existing model folder, "
                          f"a .gguf file, a cached hub id, or '{BUNDLED_STUDENT}'")
    return _cached_hub_model(spec)


def bundled_gguf_path() -> Path:
    """The bundled SmolLM2 .gguf file (models.bundled); a ModelError the UI shows when it is missing."""
    return smollm2_gguf()


def base_student_gguf() -> Path:
    """The default student's .gguf (Gemma 3 270M base, assembled from registry chunk packages)."""
    from models.bundled import gemma3_270m_gguf

    return gemma3_270m_gguf()


def bundled_tokenizer_dir(models_dir: Path) -> Path:
    """A folder with only the bundled tokenizer (seconds, not the whole model): for tests and tools."""
    full = Path(models_dir) / BUNDLED_STUDENT
    if (full / "config.json").exists():
        return full
    target = Path(models_dir) / f"{BUNDLED_STUDENT}-tokenizer"
    if (target / "tokenizer_config.json").exists():
        return target
    gguf = bundled_gguf_path()
    with _staging_dir(target) as tmp:
        _load_gguf_tokenizer(gguf, SMOLLM2_CHAT_TEMPLATE).save_pretrained(tmp)
    return target


def materialise_gguf(gguf: Path, target: Path, chat_template: str | None = None) -> Path:
    """Dequantize a GGUF checkpoint once into a plain safetensors folder at `target`.

    transformers can load a GGUF directly, but the model it returns carries a GGUF quantizer that
    refuses both training and save_pretrained; a dequantized copy on disk has neither problem and
    loads in a second next time.
    """
    if (target / "config.json").exists():
        return target
    with _staging_dir(target) as tmp:
        model = _load_gguf_model(gguf)
        model.save_pretrained(tmp, safe_serialization=True)
        _load_gguf_tokenizer(gguf, chat_template).save_pretrained(tmp)
    return target


def _load_gguf_model(gguf: Path):
    import torch
    from transformers import AutoModelForCausalLM, GgufConfig

    # dequantize=True: with the optional `kernels` package installed transformers would otherwise keep
    # the weights packed in GGUF blocks, which cannot be trained or saved as safetensors.
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True))
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # The weights are already dense; this only drops the "quantized" marks (hf_quantizer,
        # config.quantization_config, is_quantized) that make Trainer and save_pretrained refuse.
        quantizer.remove_quantization_config(model)
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    return model


def _load_gguf_tokenizer(gguf: Path, chat_template: str | None):
    """The GGUF's tokenizer. One without a chat template is a base model's: it gets `chat_template`, else
    the studio's base template for its architecture (models.chat_templates: the answer ends with eos)."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if not tokenizer.chat_template:
        if chat_template is None:
            architecture = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name).model_type
            chat_template = chat_templates.for_base_model(architecture)
            log.info("%s has no chat template: a base model; using the studio's %s base template", gguf.name,
                     architecture)
        tokenizer.chat_template = chat_template
    return tokenizer


class _staging_dir:
    """A temp folder next to `target`, renamed onto it on success and deleted on failure.

    A crash mid-write (or a killed child) therefore never leaves a half-written model that a later
    run would take as complete. If another process won the race, its folder is kept and ours dropped.
    """

    def __init__(self, target: Path):
        self.target = Path(target)

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", dir=self.target.parent))
        os.chmod(self.tmp, 0o755)  # mkdtemp makes it private; the model folder is an ordinary shared folder
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                os.rename(self.tmp, self.target)
                return False
            except OSError:
                if not self.target.exists():
                    raise
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def check_model_folder(folder: Path) -> Path:
    """Accept a folder with config.json and safetensors weights; refuse pickle-only checkpoints."""
    if folder.is_file():
        raise ModelError(f"student {folder} is a file; pass the model folder (with config.json) or a .gguf file")
    if not (folder / "config.json").exists():
        raise ModelError(f"{folder} has no config.json, so it is not a transformers model folder")
    if not any(folder.glob("*.safetensors")):
        pickles = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        if pickles:
            # Loading a pickle runs arbitrary code from the file; we only train from safetensors.
            raise ModelError(f"{folder} holds only pickle weights ({', '.join(sorted(pickles)[:3])}); convert them "
                              "to safetensors first (model.save_pretrained(dir, safe_serialization=True))")
        raise ModelError(f"{folder} has no *.safetensors weights")
    return folder


def check_adapter_folder(folder: Path) -> Path:
    """Accept a PEFT adapter folder with safetensors weights; refuse pickle adapters (.bin/.pt)."""
    folder = Path(folder).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise ModelError(f"{folder} has no adapter_config.json, so it is not a PEFT adapter folder")
    if not (folder / "adapter_model.safetensors").is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        what = f"only pickle weights ({', '.join(pickles[:3])})" if pickles else "no adapter_model.safetensors"
        # Unpickling an adapter someone handed you runs whatever code it carries.
        raise ModelError(f"adapter {folder} has {what}; only safetensors adapters are loaded "
                          "(re-save it with save_pretrained(dir, safe_serialization=True))")
    return folder


def trusted_models() -> list[str]:
    """The models the user allowed to run their own code (`--trust-remote-code MODEL`, or the env var)."""
    return [m.strip() for m in os.environ.get(TRUST_ENV, "").split(",") if m.strip()]


def custom_code(folder: Path) -> dict[str, str]:
    """The Python classes a model folder asks transformers to import from its own files (`auto_map`)."""
    found = {}
    for name in ("config.json", "tokenizer_config.json"):
        auto_map = read_model_json(folder, name).get("auto_map") or {}
        for auto, ref in auto_map.items():  # tokenizers map to [slow, fast]
            refs = [r for r in (ref if isinstance(ref, list) else [ref]) if r]
            if refs:
                found[auto] = ", ".join(refs)
    return found


def trust_remote_code(folder: Path, spec: str) -> bool:
    """The `trust_remote_code=` every loader passes for the model `spec` resolved to `folder`.

    A model folder may name Python files of its own in `auto_map`; transformers runs them only with
    trust_remote_code=True, and that code can do anything this user can. So it is off unless this
    very model is listed in DISTILL_TRUST_REMOTE_CODE (app.py --trust-remote-code MODEL), and then
    every load logs a warning. Untrusted, a model transformers knows natively loads with its built-in
    classes (the custom files are ignored); one that only works with its own code is refused here,
    before anything is imported.
    """
    custom = custom_code(folder)
    if not custom:
        return False
    if _is_trusted(spec, folder):
        log.warning("model %s runs its own Python code (%s) because it is listed in %s", spec,
                    "; ".join(f"{k}: {v}" for k, v in custom.items()), TRUST_ENV)
        return True
    missing = _needs_own_code(folder)
    if missing:
        raise ModelError(f"model {spec} ({folder}) needs its own Python code to load ({missing}), and running a "
                          f"model's code is off: it could do anything you can. If you trust this model, start the "
                          f"studio with --trust-remote-code {spec} (or set {TRUST_ENV}={spec})")
    return False


def _is_trusted(spec: str, folder: Path) -> bool:
    for entry in trusted_models():
        if entry == spec.strip():
            return True
        path = Path(entry).expanduser()
        if path.exists() and path.resolve() == Path(folder).resolve():
            return True
    return False


def _needs_own_code(folder: Path) -> str:
    """What in `folder` transformers has no built-in class for ('' when everything is native)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    config, tokenizer = read_model_json(folder, "config.json"), read_model_json(folder, "tokenizer_config.json")
    if config.get("auto_map") and config.get("model_type") not in CONFIG_MAPPING:
        return f"model_type {config.get('model_type')!r} in config.json"
    tokenizer_class = tokenizer.get("tokenizer_class")
    if tokenizer.get("auto_map") and tokenizer_class and tokenizer_class_from_name(tokenizer_class) is None:
        return f"tokenizer_class {tokenizer_class!r} in tokenizer_config.json"
    return ""


def _looks_like_path(spec: str) -> bool:
    # A hub id is "name" or "owner/name"; anything else that does not exist is a mistyped path.
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec


def _cached_hub_model(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id, local_files_only=True)
    except HFValidationError as exc:
        raise ModelError(f"student {repo_id!r} is neither an existing path nor a valid hub id ({exc})") from None
    except LocalEntryNotFoundError:
        raise ModelError(f"student {repo_id!r} is not available offline: it is not in the local Hugging Face "
                          f"cache. Download it on a connected machine (hf download {repo_id}) or pass a local "
                          f"folder, or use the bundled '{BUNDLED_STUDENT}'") from None
    return check_model_folder(Path(folder))
