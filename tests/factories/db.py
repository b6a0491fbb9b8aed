"""Small builders for metadata rows, for DB, service and API tests.

Each takes a ``Session``, adds and flushes (so ids exist) but never commits: the test owns
the transaction, as a route or job handler would.
"""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from loreg.db import (
    Adapter,
    AdapterVersion,
    Blob,
    Membership,
    Namespace,
    NamespaceKind,
    Role,
    User,
    VersionLabel,
    VersionTargetModule,
    Visibility,
)
from loreg.digests import sha256_digest

_counter = itertools.count(1)


def unique_name(prefix: str) -> str:
    return f"{prefix}{next(_counter)}"


def make_namespace(
    session: Session, name: str | None = None, kind: str = NamespaceKind.ORG, **fields: Any
) -> Namespace:
    ns = Namespace(name=name or unique_name("org"), kind=str(kind), **fields)
    session.add(ns)
    session.flush()
    return ns


def make_user(
    session: Session, name: str | None = None, *, is_admin: bool = False, **fields: Any
) -> User:
    """A user with its personal namespace (same name) where it is admin."""
    name = name or unique_name("user")
    ns = make_namespace(session, name, NamespaceKind.USER)
    user = User(name=name, namespace=ns, is_admin=is_admin, **fields)
    session.add(user)
    session.flush()
    session.add(Membership(namespace=ns, user=user, role=Role.ADMIN.value))
    session.flush()
    return user


def add_member(session: Session, namespace: Namespace, user: User, role: str = Role.READ) -> None:
    session.add(Membership(namespace=namespace, user=user, role=str(role)))
    session.flush()


def make_adapter(
    session: Session,
    namespace: Namespace,
    name: str | None = None,
    *,
    visibility: str = Visibility.PRIVATE,
    created_by: User | None = None,
    **fields: Any,
) -> Adapter:
    adapter = Adapter(
        namespace=namespace,
        name=name or unique_name("adapter"),
        visibility=str(visibility),
        created_by=created_by.id if created_by else None,
        **fields,
    )
    session.add(adapter)
    session.flush()
    return adapter


def make_blob(session: Session, data: bytes | None = None) -> Blob:
    """A blob row (no bytes in any store: pair with a BlobStore put where bytes matter)."""
    data = data if data is not None else unique_name("blob").encode()
    digest = sha256_digest(data)
    blob = session.get(Blob, digest) or Blob(digest=digest, size=len(data))
    session.add(blob)
    session.flush()
    return blob


def make_version(
    session: Session,
    adapter: Adapter,
    *,
    number: int | None = None,
    r: int = 8,
    lora_alpha: float = 16.0,
    target_modules: list[str] | None = None,
    labels: dict[str, str] | None = None,
    created_by: User | None = None,
    **fields: Any,
) -> AdapterVersion:
    """A LoRA version with PEFT-like config fields; number defaults to the next free one."""
    if number is None:
        number = max((v.number for v in adapter.versions), default=0) + 1
    targets = target_modules if target_modules is not None else ["q_proj", "v_proj"]
    labels = labels or {}
    config = {"peft_type": "LORA", "r": r, "lora_alpha": lora_alpha, "target_modules": targets}
    values: dict[str, Any] = {
        "digest": sha256_digest(f"{adapter.id}:{number}:{unique_name('v')}".encode()),
        "peft_type": "LORA",
        "num_parameters": 1000,
        "size_bytes": 4000,
        "adapter_config": config,
        "dtype": "float32",
    }
    values.update(fields)
    version = AdapterVersion(
        adapter=adapter,
        number=number,
        r=r,
        lora_alpha=lora_alpha,
        target_modules=targets,
        labels=labels,
        created_by=created_by.id if created_by else None,
        **values,
    )
    version.target_module_rows = [VersionTargetModule(module=m) for m in targets]
    version.label_rows = [VersionLabel(key=k, value=str(v)) for k, v in labels.items()]
    session.add(version)
    session.flush()
    return version
