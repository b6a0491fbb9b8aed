"""The Hugging Face Hub protocol (docs/huggingface.md): with ``HF_ENDPOINT`` pointing at loreg,
``huggingface_hub`` (and what is built on it: transformers, PEFT, vLLM) reads and publishes
adapters by repo id.

These routes live at the Hub's own paths (``/api/models/...``, ``/{repo}/resolve/...``,
``/{repo}.git/info/lfs/...``), answer errors the way the Hub does (``loreg.api.hub.route``),
and are left out of the OpenAPI document, which describes loreg's own API.
"""

from __future__ import annotations

from fastapi import APIRouter

from loreg.api.hub import files, repos, uploads
from loreg.api.hub.route import HubRoute

router = APIRouter(route_class=HubRoute, include_in_schema=False)
router.include_router(repos.router)
router.include_router(uploads.router)
router.include_router(files.router)

__all__ = ["router"]
