"""Pure tensor math: LoRA delta weights, multi-adapter combinations, streaming merge, export.

Imports torch, safetensors and ``loreg.formats`` only (no DB, web or storage code), so the
worker and the offline CLI (``loreg merge --local``) run the same engine.
"""

from loreg.merge.combine import CombineResult, combine_adapters
from loreg.merge.device import resolve_device
from loreg.merge.export import ExportResult, export_adapter
from loreg.merge.methods import METHODS
from loreg.merge.sources import save_tensors
from loreg.merge.stream import (
    CancelFn,
    FingerprintMismatch,
    MergeResult,
    ProgressFn,
    merge_checkpoint,
)
from loreg.merge.writer import OutputFile

__all__ = [
    "METHODS",
    "CancelFn",
    "CombineResult",
    "ExportResult",
    "FingerprintMismatch",
    "MergeResult",
    "OutputFile",
    "ProgressFn",
    "combine_adapters",
    "export_adapter",
    "merge_checkpoint",
    "resolve_device",
    "save_tensors",
]
