"""Pure tensor math: LoRA delta weights, multi-adapter combinations, streaming merge, export.

Imports torch, safetensors and ``loreg.formats`` only (no DB, web or storage code), so the
worker and the offline CLI (``loreg merge --local``) run the same engine. The package itself
imports nothing, so ``loreg.merge.options`` (the method vocabulary) loads without torch:
import the engine from its modules (``loreg.merge.stream.merge_checkpoint``,
``loreg.merge.combine.combine_adapters``, ``loreg.merge.export.export_adapter``).
"""
