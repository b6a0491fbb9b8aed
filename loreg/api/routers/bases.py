"""Base models: register, list/search by name, show (with the tensor manifest)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from loreg.api.deps import OptionalUser, SessionDep
from loreg.api.openapi import errors
from loreg.api.routers._views import base_out, bases_out
from loreg.api.schemas.bases import BaseCreate, BaseList, BaseOut, TensorSpec
from loreg.services import bases
from loreg.services.manifests import FileEntry
from loreg.services.pagination import DEFAULT_LIMIT, MAX_LIMIT

router = APIRouter(tags=["bases"])


@router.post(
    "/bases",
    status_code=201,
    response_model=BaseOut,
    responses={
        **errors(403, 409),
        200: {"model": BaseOut, "description": "Already registered identically"},
    },
    summary="Register a base model (200 when already registered identically)",
)
def register_base(
    body: BaseCreate, session: SessionDep, actor: OptionalUser, response: Response
) -> BaseOut:
    """Register a base model from its manifest: tensor names, dtypes and shapes, fingerprint
    and structure hash (`loreg base manifest DIR` prints this body). With `files` (uploaded
    blobs) workers can merge into it; without, it is only checked against. 200 when the same
    base is already registered; 409 when the name is taken by another fingerprint.
    """
    tensors = {
        name: (t.dtype, t.shape) if isinstance(t, TensorSpec) else (t[0], t[1])
        for name, t in body.tensors.items()
    }
    spec = bases.BaseSpec(
        name=body.name,
        tensors=tensors,
        fingerprint=body.fingerprint,
        structure_hash=body.structure_hash,
        size_bytes=body.size_bytes,
        config=body.config,
        aliases=body.aliases,
        tensor_files=body.tensor_files,
        files=[FileEntry(f.path, f.digest, f.size) for f in body.files],
        description=body.description,
    )
    record, created = bases.register_base(session, actor, spec)
    session.commit()
    if not created:
        response.status_code = 200
    return base_out(session, record)


@router.get("/bases", response_model=BaseList, summary="List base models (q: name contains)")
def list_bases(
    session: SessionDep,
    actor: OptionalUser,
    q: Annotated[str | None, Query(max_length=256)] = None,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> BaseList:
    """Registered base models by name (`q`: name contains). Bases are public facts."""
    page = bases.list_bases(session, query=q, cursor=cursor, limit=limit)
    return BaseList(bases=bases_out(session, page.items), next_cursor=page.next_cursor)


@router.get(
    "/bases/{name:path}", response_model=BaseOut, summary="Show a base model", responses=errors(404)
)
def show_base(name: str, session: SessionDep, actor: OptionalUser) -> BaseOut:
    """One base model with its full manifest (every tensor's dtype and shape) and files."""
    return base_out(session, bases.get_base(session, name))
