"""The fine-tuning recipe: the knowledge probe, the trajectory data, LoRA SFT, and the
shipped adapter (``training/adapter``, package data). See docs/fine-tuning.md."""
