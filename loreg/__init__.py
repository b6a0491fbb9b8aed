"""loreg: a registry for LoRA adapters."""

__version__ = "0.1.0"
