"""``/ui``: server-rendered pages over the same services the API calls.

``router`` is what the app mounts: the static files, then the pages of each part
(``sign_in``, ``adapter_pages``, ``base_pages``, ``job_pages``), then a friendly 404 for
any other path. Each page module has its own router; the order here is the order FastAPI
tries them in. How sign-in and CSRF work: ``loreg.ui.session``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from loreg.ui import adapter_pages, base_pages, job_pages, sign_in
from loreg.ui.rendering import not_found
from loreg.ui.session import UiActor

STATIC_DIR = Path(__file__).parent / "static"
STATIC_TYPES = {"style.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}

router = APIRouter(include_in_schema=False)


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC_TYPES:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(
        (STATIC_DIR / name).read_bytes(),
        media_type=STATIC_TYPES[name],
        headers={"Cache-Control": "public, max-age=300"},
    )


router.include_router(sign_in.router)
router.include_router(adapter_pages.router)
router.include_router(base_pages.router)
router.include_router(job_pages.router)


@router.get("/{rest:path}")
def unknown(rest: str, request: Request, actor: UiActor) -> Response:
    return not_found(request)
