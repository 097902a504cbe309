"""primus-bridge: post-training (SFT, instruction/chat tuning, LoRA, HF import/export) on Megatron-Bridge."""

__version__ = "0.1.0"
