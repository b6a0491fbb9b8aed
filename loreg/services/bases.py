"""Base models: register one (manifest, fingerprint, structure hash, optional files), list,
show and search by name.

Base models are the registry's shared catalogue: any caller may list and read their metadata;
registering needs a write-scoped token. A name is taken once: registering it again with the
same fingerprint is idempotent (and may add the files a header-only registration lacked);
with another fingerprint it is a ``Conflict``. The structure hash is recomputed here from the
manifest; the fingerprint needs the tensor bytes, so the worker re-checks it when it reads
the files.

Storage: ``base_models.manifest`` maps tensor name -> ``[dtype, shape]``; ``config`` holds what
else the formats code reported about the checkpoint: ``{"aliases": {...}, "tensor_files":
{...}, "config": <config.json or null>}`` (``aliases``: tied weights the checkpoint omits,
``lm_head.weight`` -> the input embedding; ``tensor_files``: which file holds each tensor).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loreg.db.models import BaseModelFile, BaseModelRecord
from loreg.digests import validate_digest
from loreg.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from loreg.formats.base import model_type_of, tied_aliases
from loreg.formats.base import structure_hash as compute_structure_hash
from loreg.formats.safetensors import DTYPE_BITS
from loreg.formats.types import BaseManifest
from loreg.refs import validate_base_name
from loreg.services import audit
from loreg.services.manifests import FileEntry, check_entries, require_blobs
from loreg.services.pagination import (
    DEFAULT_LIMIT,
    Page,
    check_limit,
    decode_cursor,
    page_of,
)
from loreg.services.permissions import Actor, is_site_admin, require_scope
from loreg.services.text import storable

MAX_TENSORS = 500_000
MAX_TENSOR_NAME = 1024
MAX_NDIM = 8
MAX_DESCRIPTION = 10_000


@dataclass
class BaseSpec:
    """What a client registers (the output of ``loreg.formats.base`` on its folder)."""

    name: str
    tensors: Mapping[str, tuple[str, Sequence[int]]]
    fingerprint: str
    structure_hash: str | None = None
    size_bytes: int | None = None
    config: dict[str, Any] | None = None
    aliases: dict[str, str] | None = None
    tensor_files: dict[str, str] | None = None
    files: list[FileEntry] = field(default_factory=list)
    description: str = ""


def _check_tensors(
    tensors: Mapping[str, tuple[str, Sequence[int]]],
) -> dict[str, tuple[str, tuple[int, ...]]]:
    if not tensors:
        raise InvalidInput("the manifest lists no tensors", details={"field": "tensors"})
    if len(tensors) > MAX_TENSORS:
        raise InvalidInput(f"at most {MAX_TENSORS} tensors", details={"count": len(tensors)})
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, entry in tensors.items():
        if not isinstance(name, str) or not name or len(name) > MAX_TENSOR_NAME:
            raise InvalidInput(
                "tensor names must be 1-1024 characters", details={"tensor": str(name)[:100]}
            )
        try:
            dtype, shape = entry
        except (TypeError, ValueError):
            raise InvalidInput(
                f"tensor {name!r}: expected [dtype, shape]", details={"tensor": name}
            ) from None
        if dtype not in DTYPE_BITS:
            raise InvalidInput(
                f"tensor {name!r}: unknown dtype {str(dtype)[:20]!r}",
                details={"tensor": name, "allowed": sorted(DTYPE_BITS)},
            )
        if (
            not isinstance(shape, list | tuple)
            or len(shape) > MAX_NDIM
            or any(
                isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < 2**40 for d in shape
            )
        ):
            raise InvalidInput(
                f"tensor {name!r}: shape must be a list of at most {MAX_NDIM} "
                "non-negative integers",
                details={"tensor": name},
            )
        out[name] = (dtype, tuple(shape))
    return dict(sorted(out.items()))


def _check_aliases(
    aliases: dict[str, str] | None,
    config: dict[str, Any] | None,
    tensors: Mapping[str, Any],
) -> dict[str, str]:
    if aliases is None:
        return tied_aliases(config, tensors)
    if not isinstance(aliases, dict) or len(aliases) > 64:
        raise InvalidInput(
            "aliases must map at most 64 tensor names to tensor names", details={"field": "aliases"}
        )
    for alias, target in aliases.items():
        if alias in tensors or target not in tensors:
            raise InvalidInput(
                f"alias {str(alias)[:100]!r} must name an omitted tensor and point at a listed one",
                details={"field": "aliases", "alias": str(alias)[:100]},
            )
    return dict(sorted(aliases.items()))


def _check_tensor_files(
    tensor_files: dict[str, str] | None, tensors: Mapping[str, Any], files: list[FileEntry]
) -> dict[str, str] | None:
    if tensor_files is None:
        return None
    paths = {f.path for f in files}
    for tname, path in tensor_files.items():
        if (
            tname not in tensors
            or not isinstance(path, str)
            or len(path) > 512
            or (paths and path not in paths)
        ):
            raise InvalidInput(
                f"tensor_files: {str(tname)[:100]!r} -> {str(path)[:100]!r} does not name a "
                "listed tensor and file",
                details={"field": "tensor_files"},
            )
    return dict(sorted(tensor_files.items()))


def extras_of(base: BaseModelRecord) -> dict[str, Any]:
    """The stored ``config`` column as a dict (see the module docstring)."""
    return base.config if isinstance(base.config, dict) else {}


def base_files(session: Session, base_id: int) -> list[FileEntry]:
    """A registered base's files, by path (what a merge job downloads)."""
    return [
        FileEntry(r.path, r.blob_digest, r.size)
        for r in session.scalars(
            select(BaseModelFile)
            .where(BaseModelFile.base_model_id == base_id)
            .order_by(BaseModelFile.path)
        )
    ]


def manifest_of(base: BaseModelRecord) -> BaseManifest:
    """The ``BaseManifest`` the formats code checks adapters against, from the stored row."""
    tensors = {
        name: (str(entry[0]), tuple(int(d) for d in entry[1]))
        for name, entry in (base.manifest or {}).items()
    }
    extras = extras_of(base)
    return BaseManifest(
        tensors=tensors,
        structure_hash=base.structure_hash,
        fingerprint=base.fingerprint,
        num_parameters=base.num_parameters,
        size_bytes=base.size_bytes,
        files=dict(extras.get("tensor_files") or {}),
        aliases=dict(extras.get("aliases") or {}),
        model_type=model_type_of(extras.get("config")),
    )


def find_base(session: Session, name: str) -> BaseModelRecord | None:
    validate_base_name(name)
    return session.scalar(select(BaseModelRecord).where(BaseModelRecord.name == name))


def get_base(session: Session, name: str) -> BaseModelRecord:
    base = find_base(session, name)
    if base is None:
        raise NotFound(f"base model '{name}' not found", details={"base": name})
    return base


def register_base(session: Session, actor: Actor, spec: BaseSpec) -> tuple[BaseModelRecord, bool]:
    """Register (or idempotently re-register) a base model; ``(record, created)``."""
    principal = require_scope(actor, "write")
    validate_base_name(spec.name)
    validate_digest(spec.fingerprint)
    tensors = _check_tensors(spec.tensors)
    computed = compute_structure_hash(tensors)
    if spec.structure_hash is not None and spec.structure_hash != computed:
        raise InvalidInput(
            "structure_hash does not match the manifest",
            details={"given": spec.structure_hash, "computed": computed},
        )
    if len(spec.description) > MAX_DESCRIPTION:
        raise InvalidInput("description is too long", details={"limit": MAX_DESCRIPTION})
    storable(spec.description, field="description")
    if spec.config is not None and not isinstance(spec.config, dict):
        raise InvalidInput("config must be a JSON object", details={"field": "config"})
    files = check_entries(spec.files)
    require_blobs(session, principal, files)
    extras = {
        "aliases": _check_aliases(spec.aliases, spec.config, tensors),
        "tensor_files": _check_tensor_files(spec.tensor_files, tensors, files),
        "config": spec.config,
    }
    num_parameters = sum(math.prod(shape) for _, shape in tensors.values())
    size_bytes = spec.size_bytes
    if size_bytes is None or size_bytes < 0:
        size_bytes = sum(math.prod(s) * DTYPE_BITS[d] // 8 for d, s in tensors.values())

    existing = find_base(session, spec.name)
    if existing is not None:
        if existing.fingerprint != spec.fingerprint or existing.structure_hash != computed:
            raise Conflict(
                f"base model '{spec.name}' is already registered with another fingerprint",
                details={"base": spec.name, "fingerprint": existing.fingerprint},
            )
        have = {f.path: f for f in existing.files}
        if files and not have:
            if existing.created_by != principal.user_id and not is_site_admin(principal):
                raise PermissionDenied(
                    "only whoever registered this base model (or a site admin) may add its files",
                    details={"base": spec.name},
                )
            for f in files:
                existing.files.append(BaseModelFile(path=f.path, blob_digest=f.digest, size=f.size))
            if not extras_of(existing).get("tensor_files") and extras["tensor_files"]:
                existing.config = {**extras_of(existing), "tensor_files": extras["tensor_files"]}
            session.flush()
            audit.record(
                session, principal, "base.add_files", "base", spec.name, {"files": len(files)}
            )
        elif files and {p: (f.blob_digest, f.size) for p, f in have.items()} != {
            f.path: (f.digest, f.size) for f in files
        }:
            raise Conflict(
                f"base model '{spec.name}' is already registered with other files",
                details={"base": spec.name},
            )
        return existing, False

    record = BaseModelRecord(
        name=spec.name,
        fingerprint=spec.fingerprint,
        structure_hash=computed,
        manifest={name: [dtype, list(shape)] for name, (dtype, shape) in tensors.items()},
        num_parameters=num_parameters,
        size_bytes=size_bytes,
        config=extras,
        description=spec.description,
        created_by=principal.user_id,
        files=[BaseModelFile(path=f.path, blob_digest=f.digest, size=f.size) for f in files],
    )
    session.add(record)
    session.flush()
    audit.record(
        session,
        principal,
        "base.register",
        "base",
        spec.name,
        {"fingerprint": spec.fingerprint, "files": len(files)},
    )
    return record, True


def list_bases(
    session: Session,
    *,
    query: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[BaseModelRecord]:
    """By name (case-insensitive substring ``query``), in name order, keyset-paginated."""
    check_limit(limit)
    stmt = select(BaseModelRecord).order_by(BaseModelRecord.name).limit(limit + 1)
    if query:
        if len(query) > 256:
            raise InvalidInput("query is too long", details={"field": "q"})
        stmt = stmt.where(func.lower(BaseModelRecord.name).contains(query.lower(), autoescape=True))
    after = decode_cursor("bases", cursor)
    if after is not None:
        name = after.get("name")
        if not isinstance(name, str):
            raise InvalidInput("invalid cursor", details={"field": "cursor"})
        stmt = stmt.where(BaseModelRecord.name > name)
    return page_of(list(session.scalars(stmt)), limit, "bases", lambda b: {"name": b.name})
