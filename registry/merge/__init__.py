"""Pure tensor math: LoRA delta weights, multi-adapter combinations, streaming merge, export.

Imports torch, safetensors and ``registry.formats`` only (no DB, web or storage code), so the
worker and the offline CLI (``loreg merge --local``) run the same engine.
"""

from registry.merge.device import resolve_device
from registry.merge.methods import METHODS
from registry.merge.stream import FingerprintMismatch, MergeResult, merge_checkpoint
from registry.merge.writer import OutputFile

__all__ = [
    "METHODS",
    "FingerprintMismatch",
    "MergeResult",
    "OutputFile",
    "merge_checkpoint",
    "resolve_device",
]
