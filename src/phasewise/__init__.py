"""phasewise: predict, plan and emulate LLM serving, prefill and decode treated as two workloads."""

__version__ = "0.1.0"
