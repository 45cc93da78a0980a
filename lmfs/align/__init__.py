"""Alignment (CS336 assignment 5): SFT and GRPO tensor functions (``sft``, ``grpo``), data, parsing and DPO."""
