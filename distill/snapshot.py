"""What a run trains on: the workspace's rows for its method, frozen with an id and a content hash each.

Runs in the studio process (standard library + the store). The training child only ever reads the
snapshot file written from these rows, never the live workspace.

Row ids: a generation id ("12") for sft / kd / kd_logprobs, "chosen>rejected" generation ids for a DPO
pair. The hash covers the training text only (messages; prompt + chosen + rejected), so an edited answer
shows as "changed" when two runs are diffed, while logprobs (never rewritten) do not enter it.
"""
from __future__ import annotations

from curation.errors import StudioError
from distill import dpo
from distill.config import TrainConfig
from distill.data import content_hash, example_row

PAIR_KEYS = ("prompt", "chosen", "rejected")


def collect(store, config: TrainConfig) -> list[dict]:
    """The method's rows, in a stable order; StudioError (what to do about it) when there are none."""
    if config.method == "dpo":
        return pair_rows(store, config)
    if config.method == "grpo":
        from distill.grpo import prompt_rows

        return prompt_rows(store, config.grpo)
    return example_rows(store, with_logprobs=config.method == "kd_logprobs")


def example_rows(store, with_logprobs: bool = False) -> list[dict]:
    """Approved train-split rows as chat examples (edited answers, teacher-only system prompts dropped).

    with_logprobs: each row also carries the teacher's stored top-k `logprobs`, None where there are
    none or where the answer was edited (they describe the teacher's text, not the edit).
    """
    examples = store.approved_examples()
    if not examples:
        raise StudioError("no approved examples to train on: approve some generations on the Review tab first")
    sources = store.generation_sources([ex["generation_id"] for ex in examples], with_logprobs=with_logprobs)
    rows = []
    for ex in examples:
        source = sources.get(ex["generation_id"], {})
        logprobs = {"logprobs": None if source.get("edited") else source.get("logprobs")} if with_logprobs else {}
        rows.append(example_row(ex, teacher=source.get("model"), **logprobs))
    if with_logprobs and not any(row["logprobs"] for row in rows):
        raise StudioError(f"none of the {len(rows)} approved answers carries the teacher's token logprobs (or "
                          "every such answer was edited): generate answers with the logprobs method on the "
                          "Generate tab and approve them, or train with sft or kd instead")
    return rows


def heldout_rows(store, config: TrainConfig) -> list[dict]:
    """Up to `config.eval_rows` chat examples of eval-split tasks (one teacher answer per task) whose loss
    the run measures as it trains; [] when the eval loss is off or the eval split has no answers yet."""
    return [example_row(ex) for ex in store.heldout_examples(config.eval_rows)] if config.eval_rows else []


def heldout_note(store, config: TrainConfig, heldout: list[dict]) -> str:
    """Why a run measures no eval loss although it was asked to ('' when it does, or when it is off)."""
    if config.eval_rows == 0 or heldout:
        return ""
    n_eval = len(store.tasks(split="eval"))
    if not n_eval:
        return "no eval loss: no task is held out (Seeds tab: hold out a fraction; or python -m curation split)"
    return (f"no eval loss: none of the {n_eval} eval tasks has a teacher answer yet (Generate: label with "
            "'answer the eval split too', or run an evaluation once)")


def pair_rows(store, config: TrainConfig) -> list[dict]:
    """DPO pairs from the source the options name; StudioError saying why when there are none."""
    options = config.dpo
    candidates = store.preference_candidates()
    if options.pairs == "scores":
        pairs = dpo.pairs_from_scores(candidates, options.min_score_gap)
    elif options.pairs == "revisions":
        pairs = dpo.pairs_from_revisions(store.revision_links(), candidates)
    elif options.pairs == "compare":
        pairs = dpo.pairs_from_preferences(store.judgments_of(kind="compare"), candidates)
    else:
        pairs = dpo.pairs_from_review(candidates)
    if not pairs:
        raise StudioError(dpo.why_no_pairs(options, candidates))
    for pair in pairs:
        pair["hash"] = content_hash(pair, PAIR_KEYS)
    return pairs


def teachers_of(rows: list[dict]) -> list[str]:
    """The teacher models whose answers a snapshot holds."""
    return sorted({row["teacher"] for row in rows if row.get("teacher")})
