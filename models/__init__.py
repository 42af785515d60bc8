"""Models: where the bundled weights are, the inference servers that serve them, and a student spec resolved to
a local folder transformers loads.

A leaf package: it imports nothing from curation, distill, evaluation or ui. Everything above it (the
elicitation engine, evaluation, training) talks to a model through an OpenAI-compatible endpoint that
this package starts, watches and stops (models.engine, models.students). What an endpoint cannot give —
the student's loss of a given text (models.nll: NLL; models.ifd: instruction-following difficulty) — runs
in the child process `python -m models.scoring`. Importing this package never imports torch: resolve.py and
nll.py import it inside the functions that load or run a model, and only that child imports ifd.py.
"""
