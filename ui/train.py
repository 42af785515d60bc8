"""Train tab: pick a method (sft, dpo, kd, kd_logprobs, grpo), see the memory estimate, start / stop / resume the
training child, watch its log, export the merged model. Thin: every decision is in distill/."""
from __future__ import annotations

import functools
from dataclasses import fields
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from curation.errors import StudioError
from distill.config import (BASE_STUDENT, GRPO_REWARDS, KD_LOSSES, METHODS, PAIR_SOURCES, DPOOptions, GRPOOptions,
                            KDOptions, TrainConfig)
from evaluation.plan import TRAINING_KINDS
from ui import train_plan
from ui.common import fmt_seconds, guarded, progress_html

METHOD_HELP = {
    "sft": "**sft** — LoRA SFT on the approved answers (edited answers win; teacher-only system prompts are "
           "left out), loss on the answer tokens, padding-free batches.",
    "dpo": "**dpo** — DPO on preference pairs: per task the best- vs the worst-judged answer (scores), the "
           "judge's pairwise verdicts (compare) or your approved vs hand-rejected answers (review). The "
           "reference model is the student with its adapter switched off.",
    "kd": "**kd** — logit distillation from a local teacher that shares the student's tokenizer: forward KL, "
          "reverse KL or generalised JSD, optionally on the student's own samples (on-policy fraction; at 1 it "
          "runs on TRL's DistillationTrainer). A teacher with another tokenizer: tick *Teacher has another "
          "tokenizer* (TRL's GOLD compares the two distributions aligned by text). The default pair — the "
          "embedded SmolLM2 teacher and the Gemma student — has two tokenizers: for token-by-token KD, train "
          "smollm2-135m-instruct as the student, or tick that box.",
    "kd_logprobs": "**kd_logprobs** — distillation from the top-k logprobs the teacher API returned with its "
                   "answers (generate with the *logprobs* method). Tokens that do not map fall back to "
                   "cross-entropy.",
    "grpo": "**grpo** — reinforcement learning from feedback (GRPO, TRL): the student answers each train task "
            "several times and learns from the answers that beat their group's mean. The reward is the task's "
            "check (`exact:` / `contains:` / `regex:`; only tasks with one are used), the judge endpoint's 1-10 "
            "score, or both. Usually after sft: *Continue from adapter* takes an sft run's adapter. A reward that "
            "never varies within a group teaches nothing: the log's `frac_reward_zero_std` says how often.",
}


D = TrainConfig()  # every control of the tab starts at the config's own default
D_GRPO = GRPOOptions()
CHECKPOINTING = {None: "auto", True: "on", False: "off"}


def _doc(name: str) -> str:
    """A TrainConfig field's own help text (shown under its control, as `--help` shows it)."""
    return next(f.metadata.get("help", "") for f in fields(TrainConfig) if f.name == name)


def config_from_values(student, max_steps, epochs, lr, batch, rank, max_length, method="sft", grad_accum=1,
                       batching="padding_free", save_steps=0, checkpointing="auto", four_bit=False,
                       pairs="scores", min_gap=2.0, dpo_beta=0.1, teacher="", kd_loss="forward_kl", kd_beta=0.5,
                       temperature=1.0, on_policy=0.0, max_new_tokens=128, cross_tokenizer=False, eval_rows=16,
                       eval_steps=0, ignore_memory=False, lora_alpha=None, reward=D_GRPO.reward,
                       num_generations=D_GRPO.num_generations, max_completion_length=D_GRPO.max_completion_length,
                       grpo_temperature=D_GRPO.temperature, grpo_beta=D_GRPO.beta, init_adapter="",
                       judge_base_url="", judge_model="") -> TrainConfig:
    """start_training's inputs → TrainConfig (validated there; a ConfigError names the field). Every default
    is TrainConfig's own (the form's controls start at them too), so the UI, the CLI and the tests agree."""
    alpha = D.lora_alpha if lora_alpha in (None, "") else lora_alpha
    return TrainConfig(
        method=method or "sft", student=(student or BASE_STUDENT).strip(), max_steps=max_steps, epochs=epochs,
        learning_rate=lr, batch_size=batch, lora_r=rank, lora_alpha=alpha, max_length=max_length,
        grad_accum=grad_accum, batching=batching, save_steps=save_steps, eval_rows=eval_rows, eval_steps=eval_steps,
        gradient_checkpointing=None if checkpointing == "auto" else checkpointing == "on", load_in_4bit=bool(four_bit),
        ignore_memory_estimate=bool(ignore_memory),
        dpo=DPOOptions(pairs=pairs, min_score_gap=min_gap, beta=dpo_beta),
        kd=KDOptions(teacher=teacher or "", loss=kd_loss, beta=kd_beta if kd_loss == "jsd" else 0.5,
                     temperature=temperature, on_policy=on_policy, max_new_tokens=max_new_tokens,
                     cross_tokenizer=bool(cross_tokenizer)),
        grpo=GRPOOptions(reward=reward, num_generations=num_generations, max_completion_length=max_completion_length,
                         temperature=grpo_temperature, beta=grpo_beta, init_adapter=(init_adapter or "").strip(),
                         judge_base_url=(judge_base_url or "").strip(), judge_model=(judge_model or "").strip()))


def _common_settings():
    with gr.Row():
        method = gr.Radio(list(METHODS), value="sft", label="Method", elem_id="train-method")
        student = gr.Textbox(value=BASE_STUDENT, label="Student (gemma-3-270m: a base model to teach; "
                             "smollm2-135m-instruct; a local folder or model id)",
                             elem_id="train-student")
    method_help = gr.Markdown(METHOD_HELP["sft"])
    with gr.Row():
        max_steps = gr.Number(value=D.max_steps, label="Max steps (-1 = by epochs)", precision=0,
                              info=_doc("max_steps"), elem_id="train-max-steps")
        epochs = gr.Number(value=D.epochs, label="Epochs", info=_doc("epochs"))
        lr = gr.Number(value=D.learning_rate, label="Learning rate", info=_doc("learning_rate"))
        batch = gr.Number(value=D.batch_size, label="Batch size", precision=0, info=_doc("batch_size"))
        rank = gr.Number(value=D.lora_r, label="LoRA rank", precision=0, info=_doc("lora_r"))
        max_length = gr.Number(value=D.max_length, label="Max length (tokens)", precision=0, info=_doc("max_length"))
    with gr.Accordion("Memory and checkpoints", open=False):
        with gr.Row():
            grad_accum = gr.Number(value=D.grad_accum, label="Gradient accumulation", precision=0,
                                   info=_doc("grad_accum"))
            batching = gr.Radio(["padding_free", "padded"], value=D.batching, label="Batches (sft)")
            save_steps = gr.Number(value=D.save_steps, label="Checkpoint every N steps (0: only on Stop)",
                                   precision=0)
            checkpointing = gr.Radio(["auto", "on", "off"], value=CHECKPOINTING[D.gradient_checkpointing],
                                     label="Gradient checkpointing")
            four_bit = gr.Checkbox(value=D.load_in_4bit, label="4-bit QLoRA (CUDA + bitsandbytes)")
    return method, method_help, [student, max_steps, epochs, lr, batch, rank, max_length, method, grad_accum,
                                 batching, save_steps, checkpointing, four_bit]


def _method_options():
    with gr.Group(visible=False) as dpo_box:
        with gr.Row():
            pairs = gr.Radio(list(PAIR_SOURCES), value=D.dpo.pairs, label="Pairs from", elem_id="train-dpo-pairs")
            min_gap = gr.Number(value=D.dpo.min_score_gap, label="Minimum judge-score gap (scores)",
                                elem_id="train-dpo-gap")
            dpo_beta = gr.Number(value=D.dpo.beta, label="DPO beta")
    with gr.Group(visible=False) as kd_box:
        with gr.Row():
            kd_loss = gr.Radio(list(KD_LOSSES), value=D.kd.loss, label="Divergence", elem_id="train-kd-loss")
            kd_beta = gr.Slider(0.05, 0.95, value=D.kd.beta, step=0.05, label="JSD beta (teacher weight)")
        with gr.Row() as white_box:
            teacher = gr.Textbox(value=D.kd.teacher, label="Teacher model (local folder / cached id)",
                                 elem_id="train-kd-teacher")
            temperature = gr.Number(value=D.kd.temperature, label="Temperature")
            on_policy = gr.Slider(0, 1, value=D.kd.on_policy, step=0.05, label="On-policy fraction (student samples)")
            max_new_tokens = gr.Number(value=D.kd.max_new_tokens, label="Sample length (on-policy)", precision=0)
            cross_tokenizer = gr.Checkbox(value=D.kd.cross_tokenizer,
                                          label="Teacher has another tokenizer (GOLD, aligned by text)",
                                          elem_id="train-kd-cross")
    boxes = [dpo_box, kd_box, white_box]
    return boxes, [pairs, min_gap, dpo_beta, teacher, kd_loss, kd_beta, temperature, on_policy, max_new_tokens,
                   cross_tokenizer]


def _grpo_options():
    """The grpo box and its inputs, appended after the older inputs (the API's positional order stays)."""
    with gr.Group(visible=False) as box:
        with gr.Row():
            reward = gr.Radio(list(GRPO_REWARDS), value=D_GRPO.reward, label="Reward", elem_id="train-grpo-reward")
            num_generations = gr.Number(value=D_GRPO.num_generations, precision=0, label="Answers per prompt")
            max_completion_length = gr.Number(value=D_GRPO.max_completion_length, precision=0,
                                              label="Tokens per answer")
            grpo_temperature = gr.Number(value=D_GRPO.temperature, label="Sampling temperature")
            grpo_beta = gr.Number(value=D_GRPO.beta, label="KL penalty (beta)")
        with gr.Row():
            init_adapter = gr.Textbox(value="", label="Continue from adapter (an sft run's adapter folder; empty: "
                                      "a fresh LoRA)", elem_id="train-grpo-adapter")
            judge_base_url = gr.Textbox(value="", label="Judge base URL (judge / both)")
            judge_model = gr.Textbox(value="", label="Judge model")
    return box, [reward, num_generations, max_completion_length, grpo_temperature, grpo_beta, init_adapter,
                 judge_base_url, judge_model]


def _eval_settings():
    with gr.Accordion("Eval loss on held-out answers", open=False):
        gr.Markdown("Measured on teacher answers of **eval**-split tasks (never trained on), one per task: the "
                    "student's loss per answer token, drawn beside the training loss.")
        with gr.Row():
            eval_rows = gr.Number(value=D.eval_rows, label="Held-out answers (0: off)", precision=0,
                                  elem_id="train-eval-rows")
            eval_steps = gr.Number(value=D.eval_steps, label="Every N steps (0: about 5 times per run)", precision=0,
                                   elem_id="train-eval-steps")
            lora_alpha = gr.Number(value=D.lora_alpha, label="LoRA alpha (scale = alpha / rank)", precision=0,
                                   info=_doc("lora_alpha"), elem_id="train-lora-alpha")
    return [eval_rows, eval_steps, lora_alpha]


# ---- handlers: the studio first, then the form's values -------------------------------------------
@guarded
def do_start(studio, *values):
    rid = studio.training.start(config_from_values(*values))
    return rid, f"started training run {rid}"


@guarded
def do_estimate(studio, *values):
    return memory_text(studio, config_from_values(*values))


@guarded
def do_resume(studio, rid):
    if rid is None:
        raise gr.Error("enter the id of a stopped run first")
    studio.training.resume(int(rid))
    return int(rid), f"resuming training run {int(rid)} from its last checkpoint"


@guarded
def do_export(studio, rid):
    from distill.export import export_merged

    rid = int(rid) if rid is not None else studio.training.run_id
    run = studio.store.run(rid) if rid is not None else None
    if run is None or run["status"] != "completed":
        raise gr.Error("export needs a completed training run")
    return f"merged model (safetensors, with README.md model card) in `{export_merged(run['run_dir'])}`"


def do_stop(studio):
    if studio.training.stopping:
        return "killing the training process now" if studio.training.stop() else "no training is running"
    return ("stopping: the run saves a checkpoint at the end of its step (Stop again to kill it now)"
            if studio.training.stop() else "no training is running")


def on_load(studio, n_inputs: int):
    """A page (re)load reattaches to the running, else the latest, training run and shows its settings."""
    rid = current_run(studio, None)
    run = studio.store.run(rid) if rid is not None else None
    try:
        values = values_from_config(run["config"]) if run else [gr.skip()] * n_inputs
    except (StudioError, TypeError, ValueError, KeyError):
        values = [gr.skip()] * n_inputs  # a run from an older studio: reattach, keep the form as it is
    return [rid, *values]


def show_method(m: str):
    return (METHOD_HELP[m], gr.update(visible=m == "dpo"), gr.update(visible=m in ("kd", "kd_logprobs")),
            gr.update(visible=m == "kd"), gr.update(visible=m == "grpo"))


# ---- layout and wiring ----------------------------------------------------------------------------
def _form() -> SimpleNamespace:
    """The settings; `inputs` in start_training's positional order (newer inputs appended, so the API's
    order of the older ones stays as it was)."""
    ui = SimpleNamespace()
    gr.Markdown("Trains a LoRA adapter on the **train** split with the student's chat template. Runs in its own "
                "process: GPU (bf16) when present, else CPU. One run at a time; Stop saves a checkpoint that "
                "Resume continues from.")
    ui.method, ui.method_help, common = _common_settings()
    ui.boxes, options = _method_options()
    eval_rows, eval_steps, lora_alpha = _eval_settings()
    ignore = gr.Checkbox(value=D.ignore_memory_estimate, label="Start anyway (the memory estimate is advice)",
                         elem_id="train-ignore-memory")
    grpo_box, grpo = _grpo_options()
    ui.boxes.append(grpo_box)
    ui.inputs = common + options + [eval_rows, eval_steps, ignore, lora_alpha] + grpo
    return ui


def _run_view(ui) -> None:
    with gr.Row():
        ui.start = gr.Button("Train student", variant="primary", elem_id="train-start")
        ui.stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
        ui.resume = gr.Button("Resume", elem_id="train-resume")
        ui.estimate = gr.Button("Estimate memory", elem_id="train-estimate")
        ui.export = gr.Button("Export merged model", elem_id="train-export")
    ui.memory_note = gr.Markdown(elem_id="train-memory")


def _progress_view(ui) -> None:
    ui.run_id = gr.Number(label="Run", precision=0, elem_id="train-run-id")
    ui.progress = gr.HTML(progress_html(0, 0, state="idle"), elem_id="train-progress")
    ui.message = gr.Markdown(elem_id="train-message")
    ui.loss_plot = gr.LinePlot(x="step", y="loss", color="curve", title="Loss (train, and eval on held-out answers)",
                               elem_id="train-loss")
    ui.log_tail = gr.Textbox(label="Log tail", lines=10, max_lines=10, interactive=False, elem_id="train-log")
    ui.timer = gr.Timer(1.0)


def build(studio):
    """The tab; returns (the reattach loader, its outputs, its API name) for the app's load event."""
    ui = _form()
    _run_view(ui)
    train_plan.build(studio, ui.inputs, config_from_values, values_from_config)
    _progress_view(ui)
    bound = functools.partial
    ui.method.change(show_method, [ui.method], [ui.method_help, *ui.boxes], api_visibility="private")
    ui.start.click(bound(do_start, studio), ui.inputs, [ui.run_id, ui.message], api_name="start_training")
    ui.stop.click(bound(do_stop, studio), None, [ui.message], api_name="stop_training")
    ui.resume.click(bound(do_resume, studio), [ui.run_id], [ui.run_id, ui.message], api_name="resume_training")
    ui.estimate.click(bound(do_estimate, studio), ui.inputs, [ui.memory_note], api_name="estimate_memory")
    ui.export.click(bound(do_export, studio), [ui.run_id], [ui.message], api_name="export_model")
    ui.timer.tick(lambda rid: poll(studio, rid), [ui.run_id], [ui.progress, ui.loss_plot, ui.log_tail, ui.message],
                  show_progress="hidden", api_name="training_status")
    return bound(on_load, studio, len(ui.inputs)), [ui.run_id, *ui.inputs], "train_reattach"


def current_run(studio, rid) -> int | None:
    """The run the Train tab shows: the id in its box when that is a training run, else the one training now
    (or last started here), else the newest training run of the workspace; None when there is none."""
    if rid:
        run = studio.store.run(int(rid))
        if run is not None and run["kind"] in TRAINING_KINDS:
            return int(rid)
    if studio.training.run_id is not None:
        return studio.training.run_id
    latest = next((r for r in studio.store.runs() if r["kind"] in TRAINING_KINDS), None)
    return latest["id"] if latest else None


def values_from_config(config: dict) -> list:
    """A stored run config (asdict of TrainConfig) as the Train tab's input values, in `config_from_values` order."""
    c = TrainConfig.from_dict({k: v for k, v in config.items() if k != "provenance"})
    checkpointing = CHECKPOINTING[c.gradient_checkpointing]
    return [c.student, c.max_steps, c.epochs, c.learning_rate, c.batch_size, c.lora_r, c.max_length, c.method,
            c.grad_accum, c.batching, c.save_steps, checkpointing, c.load_in_4bit,
            c.dpo.pairs, c.dpo.min_score_gap, c.dpo.beta, c.kd.teacher, c.kd.loss, c.kd.beta, c.kd.temperature,
            c.kd.on_policy, c.kd.max_new_tokens, c.kd.cross_tokenizer, c.eval_rows, c.eval_steps,
            c.ignore_memory_estimate, c.lora_alpha, c.grpo.reward, c.grpo.num_generations,
            c.grpo.max_completion_length, c.grpo.temperature, c.grpo.beta, c.grpo.init_adapter,
            c.grpo.judge_base_url, c.grpo.judge_model]


def memory_text(studio, config: TrainConfig) -> str:
    from distill import preflight, snapshot

    rows = snapshot.collect(studio.store, config)
    found = preflight.preview_memory(config, rows, studio.training.models_dir)
    if found is None:
        return "Memory: estimated when the run starts (the student is not on disk yet; its first run prepares it)."
    return f"Memory ({len(rows)} rows): {found.describe()}"


def poll(studio, rid):
    rid = current_run(studio, rid)
    if rid is None:
        return progress_html(0, 0, state="idle"), None, "", "no training run yet: set the options and press Train"
    p = studio.training.progress(rid)
    detail = f"· loss {p['losses'][-1][1]:.4f}" if p["losses"] else ""
    detail += f" · {p['tokens']} tokens"
    if p["status"] == "running" and not p["steps"]:
        # Before the first step the child loads (or, the first time, materialises) the student and tokenises:
        # say which, from its log, instead of a silent 0%.
        last = next((line for line in reversed((p["log_tail"] or "").splitlines()) if line.strip()), "")
        detail += f" · preparing: {last[:100]}" if last else " · preparing the student and the data"
    elif p["status"] == "running":
        detail += f" · ETA {fmt_seconds(p['eta_s'])}"
    if p["eval_losses"]:
        detail += f" · eval loss {p['eval_losses'][-1][1]:.4f}"
    bar = progress_html(p["steps"], p["max_steps"] or 0, detail, state=p["status"])
    return bar, loss_frame(p), p["log_tail"], note(p)


def loss_frame(p: dict) -> pd.DataFrame:
    """Both curves for the plot: the training loss and, when the run has held-out rows, the eval loss."""
    rows = [(step, loss, "train") for step, loss in p["losses"]]
    rows += [(step, loss, "eval (held out)") for step, loss in p["eval_losses"]]
    return pd.DataFrame(rows, columns=["step", "loss", "curve"])


def note(p: dict) -> str:
    """One line under the progress bar: what the run is doing and what the user can do next."""
    text = f"run {p['run_id']} ({p.get('kind') or 'sft'}): {p['status']}"
    if p.get("memory"):
        text += f" · memory ~{p['memory']['estimate_mb']:,.0f} MB estimated on {p['memory']['device']}"
    if p["status"] == "completed":
        text += f" · adapter in `{p['adapter_dir']}`"
    elif p.get("stopping"):
        text += " · stopping: saving a checkpoint (Stop again to kill now)"
    elif p["status"] in ("stopped", "interrupted", "failed") and p.get("resumable"):
        text += f" · checkpoint at step {p['steps']}: Resume continues from it"
    for extra in p.get("notes", []):
        text += f" · {extra}"
    if p["status"] == "failed" and p.get("error"):
        text += f" · {p['error'].splitlines()[0]}"
    return text
