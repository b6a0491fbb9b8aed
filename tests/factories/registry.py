"""A small registry with every kind of row a read shows: namespaces and members, public and
private adapters, versions with files, tags, labels, target modules, a base model, lineage
and a deleted version. Rows only (no blob bytes), added through a session and committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from loreg.db import (
    Adapter,
    AdapterVersion,
    BaseModelRecord,
    Lineage,
    Namespace,
    Tag,
    User,
    VersionFile,
    Visibility,
)
from loreg.db.base import utcnow
from loreg.services import accounts
from tests.factories.db import (
    add_member,
    make_adapter,
    make_blob,
    make_namespace,
    make_user,
    make_version,
    unique_name,
)


@dataclass
class Registry:
    """What ``fill_registry`` made (ids and names, usable after the session closed)."""

    org: str
    member: str
    member_token: str
    outsider: str
    outsider_token: str
    public: str  # ns/name of a public adapter with 3 versions (v2 deleted, v3 combined)
    private: str  # ns/name of a private adapter with 2 versions
    adapters: list[str] = field(default_factory=list)  # every adapter, oldest first
    digests: dict[str, str] = field(default_factory=dict)  # "ns/name@N" -> digest


def _add_files(session: Session, version: AdapterVersion) -> None:
    for path in ("adapter_config.json", "adapter_model.safetensors"):
        blob = make_blob(session, f"{path}:{version.id}".encode())
        session.add(
            VersionFile(version_id=version.id, path=path, blob_digest=blob.digest, size=blob.size)
        )


def _tag(
    session: Session, adapter: Adapter, name: str, version: AdapterVersion, by: User | None
) -> None:
    session.add(
        Tag(
            adapter_id=adapter.id,
            name=name,
            version_id=version.id,
            updated_by=by.id if by else None,
            updated_at=utcnow(),
        )
    )


def fill_registry(session: Session, *, extra_adapters: int = 0) -> Registry:
    """The registry described in the module docstring, plus ``extra_adapters`` public
    adapters of one version each (for paging); committed."""
    member = make_user(session, unique_name("member"))
    outsider = make_user(session, unique_name("outsider"))
    org: Namespace = make_namespace(session, unique_name("team"))
    add_member(session, org, member, "read")
    base = BaseModelRecord(
        name=f"org/{unique_name('base')}",
        fingerprint="sha256:" + "ab" * 32,
        structure_hash="sha256:" + "cd" * 32,
        manifest={},
        num_parameters=10,
        size_bytes=40,
    )
    session.add(base)
    session.flush()
    public = make_adapter(
        session,
        org,
        unique_name("pub"),
        visibility=Visibility.PUBLIC,
        created_by=member,
        description="Summarizes support tickets",
    )
    versions = [
        make_version(
            session,
            public,
            r=8 * (i + 1),
            labels={"stage": "prod"},
            target_modules=["q_proj", "v_proj"],
            created_by=member,
            base_model_id=base.id,
            description=f"checkpoint {i + 1}",
        )
        for i in range(3)
    ]
    private = make_adapter(
        session, org, unique_name("priv"), visibility=Visibility.PRIVATE, created_by=member
    )
    hidden = [
        make_version(session, private, r=4, labels={"stage": "dev"}, created_by=member)
        for _ in range(2)
    ]
    for v in [*versions, *hidden]:
        _add_files(session, v)
    session.add(
        Lineage(
            child_version_id=versions[2].id,
            parent_version_id=versions[0].id,
            position=0,
            weight=0.5,
            method="linear",
            params={},
        )
    )
    session.add(
        Lineage(
            child_version_id=versions[2].id,
            parent_version_id=hidden[0].id,
            position=1,
            weight=0.5,
            method="linear",
            params={},
        )
    )
    versions[1].deleted_at = datetime.now(UTC)
    versions[1].delete_reason = "leaked a secret"
    _tag(session, public, "latest", versions[2], None)
    _tag(session, public, "prod", versions[0], member)
    _tag(session, public, "stable", versions[0], member)
    _tag(session, private, "latest", hidden[1], None)
    extra = []
    for i in range(extra_adapters):
        a = make_adapter(
            session,
            org,
            unique_name("extra"),
            visibility=Visibility.PUBLIC,
            description=f"extra adapter {i}",
        )
        v = make_version(session, a, r=16, labels={"stage": "prod"})
        _add_files(session, v)
        _tag(session, a, "latest", v, None)
        extra.append(a)
    _token, member_token = accounts._issue_token(session, member, "t", "read", None)
    _token, outsider_token = accounts._issue_token(session, outsider, "t", "read", None)
    session.commit()
    reg = Registry(
        org=org.name,
        member=member.name,
        member_token=member_token,
        outsider=outsider.name,
        outsider_token=outsider_token,
        public=f"{org.name}/{public.name}",
        private=f"{org.name}/{private.name}",
    )
    reg.adapters = [reg.public, reg.private, *(f"{org.name}/{a.name}" for a in extra)]
    for adapter, vs in ((reg.public, versions), (reg.private, hidden)):
        for v in vs:
            reg.digests[f"{adapter}@{v.number}"] = v.digest
    return reg
