"""Models as endpoints: where the bundled weights are and the inference servers that serve them.

A leaf package: it imports nothing from curation, distill or ui, and no torch. Everything above it (the
elicitation engine, evaluation, training) talks to a model through an OpenAI-compatible endpoint that
this package starts, watches and stops.
"""
