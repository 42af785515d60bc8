"""Logit distillation (survey 3.2, divergence): against a local white-box teacher (`kd`), or against the
top-k logprobs an API teacher returned with its answers (`kd_logprobs`, no teacher needed at training).

kd: every answer token is scored by both models; the loss is forward KL, reverse KL or the generalised
JSD (`distill.losses.generalized_jsd`, TRL's GKD convention) at a temperature, in `distill.kd_trainer`. With
`on_policy` > 0 a step is, with that probability, trained on the student's own samples of the prompts (GKD's
lambda). Fully on-policy (`on_policy` 1) runs on TRL's stable `DistillationTrainer` (`distill.kd_trl`); TRL's
stable trainer has no off-policy or mixed steps, so those stay here, with a loss tested against TRL's.

kd_logprobs: the teacher's tokens come back from the API as text. Each is mapped to the student token
with that exact text and placed by character offset in the answer, so a teacher distribution is used at
the student position where the same text prefix ends. Positions without one (byte fragments an API
reports as '' or '\\ufffd', the end-of-turn token it never reports, edited answers) fall back to
cross-entropy on the answer's token. The sparse loss is `distill.losses.sparse_topk_divergence`.
"""
from __future__ import annotations

from pathlib import Path

from curation.errors import StudioError
from distill import kd_trl, runlog
from distill.config import TrainConfig

MIN_MAPPED_SHARE = 0.8  # below this share of the teacher's tokens mapping to student tokens: other tokenizer


class VocabularyMismatch(StudioError):
    """The teacher's tokens are not the student's: token-level distillation cannot compare them."""


# ---- the vocabulary check ------------------------------------------------------------------------
def vocabulary_difference(student_vocab: dict[str, int], teacher_vocab: dict[str, int]) -> str | None:
    """Why two token→id maps differ (sizes, ids that differ, with examples), or None when they are equal."""
    if student_vocab == teacher_vocab:
        return None
    differing = sorted((tok for tok in student_vocab if teacher_vocab.get(tok) != student_vocab[tok]),
                       key=lambda tok: student_vocab[tok])
    extra = sorted((tok for tok in teacher_vocab if tok not in student_vocab), key=lambda tok: teacher_vocab[tok])
    examples = [f"{tok!r} is id {student_vocab[tok]} for the student but "
                f"{teacher_vocab[tok] if tok in teacher_vocab else 'absent'} for the teacher" for tok in differing[:3]]
    examples += [f"{tok!r} (teacher id {teacher_vocab[tok]}) is not in the student's vocabulary" for tok in extra[:2]]
    return (f"{len(teacher_vocab)} teacher tokens vs {len(student_vocab)} student tokens; "
            f"{len(differing) + len(extra)} token ids differ, e.g. " + "; ".join(examples[:3]))


def mismatch_message(student: str, teacher: str, why: str) -> str:
    return (f"teacher {teacher} cannot be distilled into {student} token by token: their vocabularies differ "
            f"({why}). Logit KD compares the two next-token distributions id by id, so both models must use the "
            "same tokenizer: pick a teacher of the student's model family, tick 'Teacher has another tokenizer' "
            "(--cross-tokenizer: TRL's GOLD aligns the two by text), or train with sft on the teacher's answers")


def check_teacher(student_spec: str, teacher_spec: str, models_dir: Path, cross_tokenizer: bool = False) -> None:
    """Refuse, before anything trains, a teacher whose tokenizer is not the student's (VocabularyMismatch),
    unless cross-tokenizer distillation was asked for."""
    student_tok, teacher_tok = _tokenizer(student_spec, models_dir), _tokenizer(teacher_spec, models_dir)
    why = vocabulary_difference(student_tok.get_vocab(), teacher_tok.get_vocab())
    if why and not cross_tokenizer:
        raise VocabularyMismatch(mismatch_message(student_spec, teacher_spec, why))


def _tokenizer(spec: str, models_dir: Path):
    from transformers import AutoTokenizer

    from models.resolve import BUNDLED_STUDENT, bundled_tokenizer_dir, resolve_student, trust_remote_code

    folder = (bundled_tokenizer_dir(models_dir) if (spec or "").strip().lower() == BUNDLED_STUDENT
              else resolve_student(spec, models_dir))
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                         trust_remote_code=trust_remote_code(folder, spec))


def check_model_vocab(name: str, model_path: Path, n_tokens: int) -> None:
    """The model's output layer must cover every id of the (shared) tokenizer."""
    import json

    config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    size = config.get("text_config", config).get("vocab_size")
    if size is not None and size < n_tokens:
        raise VocabularyMismatch(f"{name} has {size} output logits for a tokenizer of {n_tokens} tokens, so it "
                                 "cannot score every token; it is not a model of this tokenizer")


# ---- API logprobs → student positions --------------------------------------------------------------
def token_text_map(tokenizer) -> dict[str, int]:
    """Student token text → id, for the tokens whose text is unique and complete.

    Byte-fragment tokens decode to '\\ufffd' and several ids decoding to the same text are ambiguous;
    both are left out, so an API token with such text is reported as unmapped rather than guessed.
    """
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=False,
                                   clean_up_tokenization_spaces=False)
    seen: dict[str, int] = {}
    ambiguous = set()
    for token_id, text in enumerate(texts):
        if not text or "\ufffd" in text:
            continue
        if text in seen:
            ambiguous.add(text)
        else:
            seen[text] = token_id
    return {text: token_id for text, token_id in seen.items() if text not in ambiguous}


def teacher_token_starts(answer: str, tokens: list[str]) -> list[int | None]:
    """Where each teacher token starts in the answer text (None where that cannot be known).

    APIs report byte-fragment tokens as '' or with '\\ufffd'; after such a run the next readable token
    is found by searching forward, so one emoji does not unplace the rest of the answer.
    """
    starts, pos = [], 0
    for token in tokens:
        if not token or "\ufffd" in token:
            starts.append(None)
            continue
        found = pos if answer.startswith(token, pos) else answer.find(token, pos)
        if found < 0:
            starts.append(None)
            continue
        starts.append(found)
        pos = found + len(token)
    return starts


def align_logprobs(answer: str, entries: list[dict], spans: list, text_to_id: dict[str, int]):
    """Per student position, the teacher's [(student id, logprob)] there, or None. Also counts.

    entries: the stored logprobs ([{token, logprob, top: [{token, logprob}]}], one per teacher token).
    spans: per student position, its (start, end) in the answer or None (`distill.data.answer_token_spans`).
    The teacher's chosen token joins its top-k when the top-k does not list it.
    Returns (per_position, {"teacher_tokens", "mapped_tokens"}).
    """
    starts = teacher_token_starts(answer, [e.get("token") or "" for e in entries])
    at = {}
    for j, start in enumerate(starts):
        if start is not None:
            at.setdefault(start, j)
    per_position = []
    for span in spans:
        j = at.get(span[0]) if span is not None else None
        per_position.append(_distribution(entries[j], text_to_id) if j is not None else None)
    mapped = sum(1 for e in entries if (e.get("token") or "") in text_to_id)
    return per_position, {"teacher_tokens": len(entries), "mapped_tokens": mapped}


def _distribution(entry: dict, text_to_id: dict[str, int]) -> list[tuple[int, float]] | None:
    out, seen = [], set()
    for alt in [*(entry.get("top") or []), {"token": entry.get("token"), "logprob": entry.get("logprob")}]:
        token_id = text_to_id.get(alt.get("token") or "")
        if token_id is None or token_id in seen or alt.get("logprob") is None:
            continue
        seen.add(token_id)
        out.append((token_id, float(alt["logprob"])))
    return out or None


def logprob_features(tokenizer, rows: list[dict], max_length: int) -> tuple[list[dict], dict]:
    """Tokenized examples with the teacher's top-k per position ("kd" key), and coverage counts.

    Refuses (VocabularyMismatch) when most of the teacher's tokens have no student token: the API
    teacher then uses another tokenizer and its distributions cannot be read token by token.
    """
    from distill.data import answer_token_spans, tokenize_example

    text_to_id = token_text_map(tokenizer)
    features, stats = [], {"examples": 0, "positions": 0, "covered": 0, "teacher_tokens": 0, "mapped_tokens": 0}
    for row in rows:
        example = tokenize_example(tokenizer, row["messages"], max_length, row.get("tools"))
        if example is None:
            continue
        kd = [None] * len(example["input_ids"])
        if row.get("logprobs"):
            spans = answer_token_spans(tokenizer, row["messages"], example["input_ids"])
            if spans is not None:
                kd, counts = align_logprobs(row["messages"][-1]["content"], row["logprobs"], spans, text_to_id)
                stats["teacher_tokens"] += counts["teacher_tokens"]
                stats["mapped_tokens"] += counts["mapped_tokens"]
        kd = [d if label != -100 else None for d, label in zip(kd, example["labels"])]
        stats["examples"] += 1
        stats["positions"] += sum(label != -100 for label in example["labels"])
        stats["covered"] += sum(d is not None for d in kd)
        features.append({**example, "kd": kd})
    if stats["teacher_tokens"] and stats["mapped_tokens"] < MIN_MAPPED_SHARE * stats["teacher_tokens"]:
        raise VocabularyMismatch(
            f"only {stats['mapped_tokens']} of the teacher's {stats['teacher_tokens']} answer tokens are tokens of "
            "the student's tokenizer: the API teacher uses another vocabulary, so its logprobs cannot be compared "
            "token by token. Use a teacher of the student's model family, or train with sft on its answers")
    return features, stats


# ---- batches ---------------------------------------------------------------------------------------
class ListDataset:
    """A list of feature dicts as a torch-style dataset (ragged per-position top-k lists included)."""

    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


class KDCollator:
    """Right-padded input_ids / attention_mask / labels; left-padded prompts (for the student's samples);
    and, for kd_logprobs, the teacher's top-k as kd_ids / kd_logprobs / kd_valid [B, L, K]."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        batch = {"input_ids": torch.full((len(features), longest), self.pad_id, dtype=torch.long),
                 "attention_mask": torch.zeros((len(features), longest), dtype=torch.long),
                 "labels": torch.full((len(features), longest), -100, dtype=torch.long)}
        for b, f in enumerate(features):
            n = len(f["input_ids"])
            batch["input_ids"][b, :n] = torch.tensor(f["input_ids"])
            batch["attention_mask"][b, :n] = 1
            batch["labels"][b, :n] = torch.tensor(f["labels"])
        prompts = [f["input_ids"][:f["prompt_length"]] for f in features]
        width = max(len(p) for p in prompts)
        batch["prompt_ids"] = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        batch["prompt_mask"] = torch.zeros((len(features), width), dtype=torch.long)
        for b, p in enumerate(prompts):
            if p:
                batch["prompt_ids"][b, width - len(p):] = torch.tensor(p)
                batch["prompt_mask"][b, width - len(p):] = 1
        if "kd" in features[0]:
            batch.update(self._topk(features, longest))
        return batch

    @staticmethod
    def _topk(features: list[dict], longest: int) -> dict:
        import torch

        k = max((len(d) for f in features for d in f["kd"] if d), default=1)
        ids = torch.zeros((len(features), longest, k), dtype=torch.long)
        logprobs = torch.zeros((len(features), longest, k), dtype=torch.float32)
        valid = torch.zeros((len(features), longest, k), dtype=torch.bool)
        for b, f in enumerate(features):
            for i, dist in enumerate(f["kd"]):
                if dist:
                    ids[b, i, :len(dist)] = torch.tensor([t for t, _ in dist])
                    logprobs[b, i, :len(dist)] = torch.tensor([lp for _, lp in dist])
                    valid[b, i, :len(dist)] = True
        return {"kd_ids": ids, "kd_logprobs": logprobs, "kd_valid": valid}


# ---- the trainer -----------------------------------------------------------------------------------
def build_kd_trainer(model_path: Path, rows: list[dict], config: TrainConfig, run_dir: Path, callbacks, device: str,
                     models_dir: Path):
    """The KD trainer of `config.method` (kd or kd_logprobs), after the vocabulary and memory checks."""
    from peft import get_peft_model
    from transformers import TrainingArguments

    from distill.data import tokenize_example
    from distill.loading import (is_main_process, load_model, load_student, load_tokenizer, lora_config,
                                 require_memory, trainer_args, use_checkpointing)
    from models.resolve import resolve_student

    tokenizer = load_tokenizer(model_path, config.student)
    teacher_path, cross = None, False
    if config.method == "kd":
        teacher_path = resolve_student(config.kd.teacher, models_dir)
        why = vocabulary_difference(tokenizer.get_vocab(), load_tokenizer(teacher_path, config.kd.teacher).get_vocab())
        if why and not config.kd.cross_tokenizer:
            raise VocabularyMismatch(mismatch_message(config.student, config.kd.teacher, why))
        cross = why is not None
        if not cross:
            check_model_vocab(f"teacher {config.kd.teacher}", teacher_path, len(tokenizer))
        features = [f for f in (tokenize_example(tokenizer, r["messages"], config.max_length, r.get("tools"))
                                for r in rows) if f]
        stats = {"examples": len(features)}
    else:
        features, stats = logprob_features(tokenizer, rows, config.max_length)
    check_model_vocab(f"student {config.student}", model_path, len(tokenizer))
    if not features:
        raise StudioError("every example was dropped during tokenization: its prompt alone fills max_length; "
                          "raise max_length")
    if is_main_process():
        runlog.append_event(run_dir, {"event": "data", **stats, **({"cross_tokenizer": True} if cross else {})})
    require_memory(config, model_path, [len(f["input_ids"]) for f in features], run_dir, device, teacher_path)
    student = load_student(model_path, config, device)
    teacher = load_model(teacher_path, config.kd.teacher, config, device) if teacher_path is not None else None
    if cross:
        return kd_trl.build_cross_tokenizer_trainer(student, teacher, teacher_path, tokenizer, rows, config, run_dir,
                                                    callbacks, device)
    if kd_trl.fits(config):
        return kd_trl.build_trainer(student, teacher, tokenizer, rows, config, run_dir, callbacks, device)
    model = get_peft_model(student, lora_config(config))
    if use_checkpointing(config, device):
        model.enable_input_require_grads()  # checkpointed layers need an input that requires grad under LoRA
    args = TrainingArguments(**trainer_args(config, run_dir, device), remove_unused_columns=False)
    eos = student.generation_config.eos_token_id
    eos_ids = sorted({*(eos if isinstance(eos, list) else [eos] if eos is not None else []), tokenizer.eos_token_id})
    from distill.kd_trainer import KDTrainer

    return KDTrainer(model=model, args=args, train_dataset=ListDataset(features),
                               data_collator=KDCollator(tokenizer.pad_token_id), processing_class=tokenizer,
                               callbacks=list(callbacks), teacher=teacher, kd=config.kd, n_tokens=len(tokenizer),
                               eos_ids=[e for e in eos_ids if e is not None], max_length=config.max_length)
