"""Evaluation of a distilled student: base student vs distilled student vs teacher on the eval split.

Beside distill/ (training), both above the elicitation engine (curation) and the model leaf (models):
evaluation imports curation and models, and from distill only `distill.runlog`, to read what a training
run left (its adapter, snapshot and metrics); distill never imports evaluation.

  evaluation.config     EvalConfig (the CLI, the UI and the tests build this one object), EvalProgress
  evaluation.plan       the inputs resolved and checked before anything runs
  evaluation.evaluate   `run_eval`: the teacher's and both students' answers, the students' NLL, the judge
  evaluation.judge      the judge's pairwise verdicts and scores
  evaluation.metrics    the maths, pure functions (win rates, ROUGE-L, checks, summaries; intervals)
  evaluation.report     run_dir/eval.jsonl, read back, and evals compared
  evaluation.failures   the closed loop: lost eval tasks become prompts for NEW train-split tasks
  evaluation.jobs       the studio's background slot for these jobs
  evaluation.playground one typed prompt answered by the three, side by side
  python -m evaluation  the headless face (evaluation/cli.py)

Eval tasks never reach training (Store.approved_examples), so none of this can leak into a snapshot.
"""
