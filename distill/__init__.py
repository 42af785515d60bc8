"""The training side of Distill Studio: LoRA SFT of a student on the approved snapshot.

Importable without gradio, and without torch: the heavy libraries load only in the training child.
Entry points: `distill.train.TrainConfig`, `distill.runner.TrainingSlot`, `python -m distill train`.
"""
