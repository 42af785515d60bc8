"""The training side of Distill Studio: LoRA SFT, DPO, logit KD and KD from API logprobs on the reviewed rows.

Importable without gradio, and without torch: the heavy libraries load only in the training child.
Entry points: `distill.config.TrainConfig`, `distill.runner.TrainingSlot`, `python -m distill train|merge`.
"""
