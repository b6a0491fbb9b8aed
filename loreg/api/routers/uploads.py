"""``POST /uploads``: which of these blobs does the registry lack? (docs/design.md §5.1)"""

from __future__ import annotations

from fastapi import APIRouter

from loreg.api.deps import OptionalUser, SessionDep
from loreg.api.openapi import errors
from loreg.api.schemas.blobs import UploadCheck, UploadCheckResult
from loreg.services import blobs

router = APIRouter(tags=["blobs"])


@router.post(
    "/uploads",
    response_model=UploadCheckResult,
    summary="Ask which digests must be uploaded (write-scoped token)",
    responses=errors(403),
)
def check_uploads(body: UploadCheck, session: SessionDep, actor: OptionalUser) -> UploadCheckResult:
    """Step 1 of a push: send the digests of the files you are about to push; the answer lists
    those the registry lacks. Upload only those with `PUT /blobs/{digest}`. Needs a write-
    scoped token.
    """
    return UploadCheckResult(missing=blobs.missing(session, actor, body.digests))
