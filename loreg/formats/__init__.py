"""Pure code over files and bytes: safetensors headers, PEFT adapters, base manifests.

No DB, web or storage imports here, so the API, the worker and the offline CLI share it.
"""
