"""Measuring real hardware with PyTorch: `phasewise calibrate` and `phasewise validate`.
Needs the optional extra `phasewise[measure]` (torch, transformers); nothing else imports this."""
