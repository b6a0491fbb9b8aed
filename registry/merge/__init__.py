"""Pure tensor math: LoRA delta weights, multi-adapter combinations, streaming merge, export.

Imports torch, safetensors and ``registry.formats`` only (no DB, web or storage code), so the
worker and the offline CLI (``loreg merge --local``) run the same engine.
"""
