"""The settings of one training run: `TrainConfig` and its per-method options.

Standard library only: the studio builds and validates these without importing torch. The CLI, the
UI and the tests all build the same objects; every range check names the field and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from curation.errors import ConfigError
from models.resolve import BASE_STUDENT, BUNDLED_STUDENT  # the student names, where they are resolved
METHODS = ("sft", "dpo", "kd", "kd_logprobs", "grpo")
BATCHING = ("padding_free", "padded")
PAIR_SOURCES = ("scores", "compare", "review", "revisions")
KD_LOSSES = ("forward_kl", "reverse_kl", "jsd")
GRPO_REWARDS = ("checks", "judge", "both")


def check(ok, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{name} {message}")


def coerce_numbers(obj) -> None:
    """Normalise the numbers UI widgets and JSON hand us (3.0 for 3, "2" from a text box) in place.

    Every caller then gets the same checks, and Trainer gets real ints.
    """
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.type == "bool | None" and isinstance(value, str):
            lowered = value.strip().lower()
            check(lowered in ("", "auto", "none", "true", "false"), f.name, f"must be true, false or auto (got {value!r})")
            setattr(obj, f.name, None if lowered in ("", "auto", "none") else lowered == "true")
            continue
        if f.type not in ("int", "float") or isinstance(value, bool) or not isinstance(value, (str, int, float)):
            continue
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{f.name} must be a number (got {value!r})") from None
        if f.type == "int":
            check(number.is_integer(), f.name, f"must be a whole number (got {value!r})")
            number = int(number)
        setattr(obj, f.name, number)


@dataclass
class DPOOptions:
    """How DPO builds its preference pairs, and how hard it pushes."""

    pairs: str = field(default="scores", metadata={
        "help": "where pairs come from: 'scores' (per task, the best- vs the worst-judged response), "
                "'compare' (the judge's pairwise verdicts), 'review' (approved vs hand-rejected responses) or "
                "'revisions' (the constitution method's revised answer vs its original)"})
    min_score_gap: float = field(default=2.0, metadata={
        "help": "'scores' only: the best response must beat the worst by at least this many points (1-10 scale)"})
    beta: float = field(default=0.1, metadata={
        "help": "DPO temperature: higher keeps the student closer to where it started (0.1 is usual)"})

    def __post_init__(self):
        coerce_numbers(self)
        check(self.pairs in PAIR_SOURCES, "dpo.pairs", f"must be one of {', '.join(PAIR_SOURCES)} (got {self.pairs!r})")
        check(0 <= self.min_score_gap <= 9, "dpo.min_score_gap",
              f"must be between 0 and 9 points on the 1-10 judge scale (got {self.min_score_gap})")
        check(0 < self.beta <= 10, "dpo.beta", f"must be in (0, 10]; 0.1 is usual (got {self.beta})")


@dataclass
class KDOptions:
    """Logit distillation: the teacher, the divergence and where the sequences come from."""

    teacher: str = field(default="", metadata={
        "help": "kd: a local teacher (folder, .gguf, cached hub id or the bundled name) with the student's tokenizer"})
    loss: str = field(default="forward_kl", metadata={
        "help": "forward_kl (mean-seeking, KL(teacher||student)), reverse_kl (mode-seeking, KL(student||teacher)) "
                "or jsd (generalised Jensen-Shannon, interpolated by beta)"})
    beta: float = field(default=0.5, metadata={
        "help": "jsd only: weight of the teacher in the mixture, strictly between 0 and 1 (TRL GKD convention)"})
    temperature: float = field(default=1.0, metadata={
        "help": "kd: softens both distributions in the loss and the student's sampling; 1 leaves them as they are"})
    on_policy: float = field(default=0.0, metadata={
        "help": "kd: fraction of steps trained on the student's own samples scored by the teacher (GKD lambda)"})
    max_new_tokens: int = field(default=128, metadata={"help": "kd on-policy: length cap of the student's samples"})
    cross_tokenizer: bool = field(default=False, metadata={
        "help": "kd: a teacher with another tokenizer is distilled by TRL's GOLD (universal logit distillation: "
                "the two distributions compared sorted, tokens aligned by text) instead of being refused"})

    def __post_init__(self):
        coerce_numbers(self)
        self.cross_tokenizer = bool(self.cross_tokenizer)
        self.teacher = (self.teacher or "").strip()
        if self.teacher and Path(self.teacher).expanduser().exists():
            self.teacher = str(Path(self.teacher).expanduser().resolve())  # the child runs from the repo root
        check(self.loss in KD_LOSSES, "kd.loss", f"must be one of {', '.join(KD_LOSSES)} (got {self.loss!r})")
        check(0 < self.beta < 1 or self.loss != "jsd", "kd.beta",
              f"must be strictly between 0 and 1 for jsd (got {self.beta}); beta 0 is forward_kl and 1 is reverse_kl")
        check(0 <= self.beta <= 1, "kd.beta", f"must be in [0, 1] (got {self.beta})")
        check(0.05 <= self.temperature <= 20, "kd.temperature", f"must be between 0.05 and 20 (got {self.temperature})")
        check(0 <= self.on_policy <= 1, "kd.on_policy",
              f"must be in [0, 1]: the fraction of steps on student samples (got {self.on_policy})")
        check(1 <= self.max_new_tokens <= 4096, "kd.max_new_tokens",
              f"must be between 1 and 4096 (got {self.max_new_tokens})")

    def jsd_beta(self) -> float:
        """The beta of `distill.losses.generalized_jsd` this loss means: 0 forward KL, 1 reverse KL."""
        return {"forward_kl": 0.0, "reverse_kl": 1.0}.get(self.loss, self.beta)


@dataclass
class GRPOOptions:
    """Online RL from the teacher's feedback."""

    reward: str = field(default="checks", metadata={
        "help": "'checks' (the task's exact:/contains:/regex: check; tasks without one are skipped), 'judge' "
                "(the judge endpoint's 1-10 score / 10) or 'both' (checks where a task has one, else the judge)"})
    num_generations: int = field(default=4, metadata={
        "help": "answers sampled per prompt; each is rewarded against its group's mean (2..16)"})
    max_completion_length: int = field(default=128, metadata={"help": "tokens per sampled answer (8..4096)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the answers (0.1..2)"})
    beta: float = field(default=0.0, metadata={
        "help": "KL penalty towards the starting policy; 0 (TRL's default) needs no reference model"})
    init_adapter: str = field(default="", metadata={
        "help": "a trained adapter folder (e.g. an SFT run's adapter) to continue from; empty: a fresh LoRA"})
    judge_base_url: str = field(default="", metadata={
        "help": "judge / both: the OpenAI-compatible judge endpoint's base URL (required for those rewards)"})
    judge_model: str = field(default="", metadata={"help": "judge / both: the judge's model name"})

    def __post_init__(self):
        coerce_numbers(self)
        check(self.reward in GRPO_REWARDS, "grpo.reward",
              f"must be one of {', '.join(GRPO_REWARDS)} (got {self.reward!r})")
        check(2 <= self.num_generations <= 16, "grpo.num_generations", f"must be 2..16 (got {self.num_generations})")
        check(8 <= self.max_completion_length <= 4096, "grpo.max_completion_length",
              f"must be 8..4096 (got {self.max_completion_length})")
        check(0.1 <= self.temperature <= 2, "grpo.temperature", f"must be 0.1..2 (got {self.temperature})")
        check(0 <= self.beta <= 1, "grpo.beta", f"must be 0..1 (got {self.beta})")
        check(not self.init_adapter or Path(self.init_adapter).is_dir(), "grpo.init_adapter",
              f"no adapter folder {self.init_adapter}")


@dataclass
class TrainConfig:
    """One run's settings: the method, the LoRA student, the optimisation, and each method's options."""

    method: str = field(default="sft", metadata={
        "help": "sft (answers), dpo (preference pairs), kd (logits of a local teacher), "
                "kd_logprobs (the teacher's top-k logprobs stored with its answers) or grpo (online RL: the "
                "student's own answers rewarded by the tasks' checks or the judge)"})
    student: str = field(default=BASE_STUDENT, metadata={
        "help": f"model to fine-tune: '{BASE_STUDENT}' (bundled Gemma 3 270M base: learns to answer and stop from "
                f"the teacher), '{BUNDLED_STUDENT}' (bundled, the teacher's own model), a local folder, a .gguf "
                "file or a cached hub id"})
    max_steps: int = field(default=-1, metadata={
        "help": "optimizer steps to train for; -1 trains for `epochs` instead"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the snapshot (used when max_steps is -1)"})
    learning_rate: float = field(default=2e-4, metadata={"help": "peak AdamW learning rate of the LoRA weights"})
    batch_size: int = field(default=4, metadata={"help": "examples (dpo: pairs) per device per forward pass"})
    grad_accum: int = field(default=1, metadata={
        "help": "forward passes per optimizer step (effective batch = batch_size * grad_accum)"})
    max_length: int = field(default=1024, metadata={"help": "tokens kept per example; longer ones are truncated"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank: capacity of the adapter"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scale numerator (update scaled by alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: str = field(default="all-linear", metadata={
        "help": "modules that get adapters: 'all-linear' or comma-separated names such as 'q_proj,v_proj'"})
    seed: int = field(default=0, metadata={"help": "seed for adapter init, data order and on-policy sampling"})
    logging_steps: int = field(default=1, metadata={"help": "write a progress line every this many steps"})
    batching: str = field(default="padding_free", metadata={
        "help": "sft: 'padding_free' concatenates a batch's examples into one sequence (no pad tokens, "
                "attention kept within each example); 'padded' pads to the longest example"})
    eval_rows: int = field(default=16, metadata={
        "help": "held-out teacher answers (eval-split tasks, never trained on) whose loss is measured during "
                "training; 0 turns the eval loss off"})
    eval_steps: int = field(default=0, metadata={
        "help": "measure the eval loss every this many steps (and at the end); 0: about 5 times per run"})
    save_steps: int = field(default=0, metadata={
        "help": "also keep a resumable checkpoint every this many steps; 0: only when the run is stopped"})
    gradient_checkpointing: bool | None = field(default=None, metadata={
        "help": "recompute activations in the backward pass to save memory (~25% slower); None: on for CUDA only"})
    load_in_4bit: bool = field(default=False, metadata={
        "help": "QLoRA: hold the frozen student in 4-bit NF4 (CUDA and bitsandbytes only)"})
    ignore_memory_estimate: bool = field(default=False, metadata={
        "help": "start even when the memory estimate says the run will not fit: the estimate is advice "
                "(calibrated on CPU), and a run that really does not fit fails with the device's own error"})
    dpo: DPOOptions = field(default_factory=DPOOptions, metadata={"help": "dpo options"})
    kd: KDOptions = field(default_factory=KDOptions, metadata={"help": "kd and kd_logprobs options"})
    grpo: GRPOOptions = field(default_factory=GRPOOptions, metadata={"help": "grpo options"})

    def __post_init__(self):
        if isinstance(self.dpo, dict):
            self.dpo = DPOOptions(**self.dpo)
        if isinstance(self.kd, dict):
            self.kd = KDOptions(**self.kd)
        if isinstance(self.grpo, dict):
            self.grpo = GRPOOptions(**self.grpo)
        coerce_numbers(self)
        check(self.method in METHODS, "method", f"must be one of {', '.join(METHODS)} (got {self.method!r})")
        check(isinstance(self.student, str) and self.student.strip(), "student",
              f"must name a model (e.g. '{BUNDLED_STUDENT}')")
        if Path(self.student).expanduser().exists():
            # The training child runs from the repo root, so a path relative to the caller's cwd would
            # point elsewhere there: pin it now, while it still means what the user meant.
            self.student = str(Path(self.student).expanduser().resolve())
        check(self.max_steps == -1 or self.max_steps >= 1, "max_steps",
              f"must be -1 (train for `epochs`) or a positive number of steps (got {self.max_steps})")
        check(0 < self.epochs <= 1000, "epochs", f"must be in (0, 1000] (got {self.epochs})")
        check(0 < self.learning_rate <= 1, "learning_rate",
              f"must be in (0, 1]; LoRA usually works with 1e-4 to 3e-4 (got {self.learning_rate})")
        check(self.batch_size >= 1, "batch_size", f"must be at least 1 (got {self.batch_size})")
        check(self.grad_accum >= 1, "grad_accum", f"must be at least 1 (got {self.grad_accum})")
        check(16 <= self.max_length <= 131072, "max_length",
              f"must be between 16 and 131072 tokens (got {self.max_length})")
        check(1 <= self.lora_r <= 1024, "lora_r", f"must be between 1 and 1024; 8 to 64 is usual (got {self.lora_r})")
        check(self.lora_alpha > 0, "lora_alpha", f"must be positive; 2 * lora_r is usual (got {self.lora_alpha})")
        check(0 <= self.lora_dropout < 1, "lora_dropout", f"must be in [0, 1) (got {self.lora_dropout})")
        check(bool(self.target_module_list()), "target_modules",
              "must be 'all-linear' or comma-separated module names such as 'q_proj,v_proj'")
        check(self.seed >= 0, "seed", f"must be 0 or more (got {self.seed})")
        check(self.logging_steps >= 1, "logging_steps", f"must be at least 1 (got {self.logging_steps})")
        check(self.batching in BATCHING, "batching", f"must be one of {', '.join(BATCHING)} (got {self.batching!r})")
        check(0 <= self.eval_rows <= 10000, "eval_rows",
              f"must be between 0 (no eval loss) and 10000 held-out answers (got {self.eval_rows})")
        check(self.eval_steps >= 0, "eval_steps", f"must be 0 (about 5 times per run) or a number of steps "
                                                  f"(got {self.eval_steps})")
        check(self.save_steps >= 0, "save_steps", f"must be 0 (only on stop) or a number of steps (got {self.save_steps})")
        self._check_method_options()

    def _check_method_options(self) -> None:
        if self.method == "grpo":
            check((self.batch_size * self.grad_accum) % self.grpo.num_generations == 0, "batch_size",
                  f"x grad_accum ({self.batch_size * self.grad_accum}) must be a multiple of grpo.num_generations "
                  f"({self.grpo.num_generations}) for grpo: each prompt's answers are compared within one batch")
        if self.method == "kd":
            check(self.kd.teacher, "kd.teacher", "must name a local teacher model that shares the student's tokenizer")
        if self.method == "kd_logprobs":
            # The API teacher scored its own answer once; it cannot score the student's samples, and its
            # logprobs come at its own temperature.
            check(self.kd.on_policy == 0, "kd.on_policy",
                  "must be 0 for kd_logprobs: the API teacher cannot score the student's own samples")
            check(self.kd.temperature == 1, "kd.temperature",
                  "must be 1 for kd_logprobs: the stored logprobs are the teacher's, at its own temperature")

    def target_module_list(self) -> str | list[str]:
        """What peft's LoraConfig takes: the 'all-linear' shortcut or a list of module names."""
        names = [n.strip() for n in str(self.target_modules).split(",") if n.strip()]
        return "all-linear" if names == ["all-linear"] else names

    def teacher_spec(self) -> str | None:
        """The local teacher model this run loads (kd only)."""
        return self.kd.teacher if self.method == "kd" else None

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
