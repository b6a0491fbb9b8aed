"""``POST /uploads``: which of these blobs does the registry lack? (DESIGN.md section 5.1)"""

from __future__ import annotations

from fastapi import APIRouter

from registry.api.deps import OptionalUser, SessionDep
from registry.api.schemas.blobs import UploadCheck, UploadCheckResult
from registry.services import blobs

router = APIRouter(tags=["blobs"])


@router.post("/uploads", response_model=UploadCheckResult,
             summary="Ask which digests must be uploaded (write-scoped token)")
def check_uploads(body: UploadCheck, session: SessionDep, actor: OptionalUser) -> UploadCheckResult:
    return UploadCheckResult(missing=blobs.missing(session, actor, body.digests))
