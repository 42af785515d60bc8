"""One config per stage: the UI's untouched controls, the CLI's unset flags and the config's own defaults are
the same object, and every field the config has is reachable from the CLI (and from the UI where it is)."""
from __future__ import annotations

import argparse
import dataclasses

import gradio as gr
import pytest

from curation import curate_cli, filter_kinds
from curation.dedupe import DedupeConfig
from curation.rank import RankConfig
from distill.config import TrainConfig


def _parser():
    parser = argparse.ArgumentParser()
    curate_cli.add_commands(parser.add_subparsers(dest="command"))
    return parser


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}


@pytest.mark.parametrize("argv,cls", [(["dedupe"], DedupeConfig), (["rank"], RankConfig),
                                      (["filter", "refusal"], filter_kinds.RefusalFilter),
                                      (["filter", "judge_score"], filter_kinds.JudgeScoreFilter),
                                      (["filter", "language"], filter_kinds.LanguageFilter)])
def test_curate_cli_flags_are_the_config_fields_with_its_defaults(argv, cls):
    args = _parser().parse_args(argv)
    assert set(args.config_fields) == _fields(cls)
    assert cls(**{name: getattr(args, name) for name in args.config_fields}) == cls()


def test_curate_cli_help_is_the_config_field_docs():
    sub = _parser()._subparsers._group_actions[0].choices
    helps = {a.dest: a.help for a in sub["dedupe"]._actions}
    assert helps["threshold"].startswith("Semantic only: cosine similarity, 0.5 to 1.0")
    assert helps["threshold"].endswith(f"(default: {DedupeConfig().threshold})")
    assert {a.dest: a.help for a in sub["rank"]._actions}["judge"].startswith("mean judge score")


def test_the_train_tab_starts_at_train_config_defaults_and_the_cli_reaches_every_field(tmp_path):
    import app
    from distill import cli as train_cli
    from ui import train as train_tab
    studio = app.Studio.open(tmp_path / "ws")
    try:
        with gr.Blocks():
            _, components, _ = train_tab.build(studio)
    finally:
        studio.close()
    inputs = components[1:]  # the first is the run id
    untouched = train_tab.config_from_values(*[c.value for c in inputs])
    assert dataclasses.asdict(untouched) == dataclasses.asdict(TrainConfig())
    # and a stored config goes back into the same controls unchanged
    assert train_tab.config_from_values(*train_tab.values_from_config(dataclasses.asdict(untouched))) == untouched

    flags = {dest for _, dest, _ in train_cli._OPTIONS}
    every = ({f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("dpo", "kd", "grpo")}
             | {f"dpo.{f.name}" for f in dataclasses.fields(TrainConfig().dpo)}
             | {f"kd.{f.name}" for f in dataclasses.fields(TrainConfig().kd)}
             | {f"grpo.{f.name}" for f in dataclasses.fields(TrainConfig().grpo)})
    assert every - flags == set()
    parsed = argparse.ArgumentParser()
    train_cli.add_train_arguments(parsed)
    assert train_cli.config_from_args(parsed.parse_args(["--workspace", "w"])) == TrainConfig()


def test_the_dedupe_panel_starts_at_dedupe_config_defaults():
    from ui import curate_dedupe
    with gr.Blocks():
        ui = curate_dedupe._layout()
    built = curate_dedupe.dedupe_config(ui.target.value, ui.method.value, ui.model.value, ui.rule.value,
                                        ui.threshold.value)
    assert built == DedupeConfig()


def test_eval_cli_flags_and_the_evaluate_tab_start_at_eval_config_defaults(tmp_path):
    import app
    from evaluation.cli import build_parser
    from evaluation.config import EvalConfig
    from ui import evaluate as evaluate_tab

    args = build_parser().parse_args(["--workspace", "w", "--run", "3"])
    assert set(args.config_fields) == _fields(EvalConfig) - {"teacher", "judge"}
    assert EvalConfig(**{n: getattr(args, n) for n in args.config_fields}) == EvalConfig(run_id=3)
    studio = app.Studio.open(tmp_path / "ws")
    try:
        with gr.Blocks():
            run = evaluate_tab._run_section(studio.store)
    finally:
        studio.close()
    values = [3, *[c.value for c in run.settings[1:]]]
    assert evaluate_tab.eval_config(*values) == EvalConfig(run_id=3)


def test_train_cli_help_is_the_train_config_field_help():
    import contextlib
    import io

    from distill.__main__ import build_parser
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(out.getvalue().split())
    assert "optimizer steps to train for; -1 trains for `epochs` instead (default: -1)" in text
    assert "LoRA rank: capacity of the adapter (default: 16)" in text
