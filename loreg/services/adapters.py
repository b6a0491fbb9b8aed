"""Adapters and their versions: push (docs/design.md §5 step 3), show, search, tags, delete.

Push reads ``adapter_config.json`` (small: the whole blob) and the safetensors header of
``adapter_model.safetensors`` (ranged reads, never the tensors) from the store, describes the
adapter with ``loreg.formats``, checks it against the base model's stored manifest, and
adds the version, its files, side tables, tags, a queued validation job and the audit event
to the caller's session; the route commits. Identical content (same canonical manifest
digest) answers the existing version.

Version numbers: the writes start by locking the adapter row (``SELECT ... FOR UPDATE`` on
PostgreSQL; on SQLite the first write of the transaction takes the database's write lock),
then the next number is ``max + 1``, so concurrent pushes to one adapter are serialised and
get consecutive numbers. Numbers of deleted versions are never reused. A push that loses a
race no lock prevents (two first pushes creating one adapter) is run again by
``push_version`` itself, so every caller (the REST route, the Hub commit, a combine job's
finish) gets the same retry.

``latest``: it follows the newest version unless a user set it by hand. A tag row whose
``updated_by`` is NULL was set by the registry (automatic); ``PUT .../tags/latest`` pins it;
``DELETE .../tags/latest`` returns it to automatic (``ns/name`` then resolves to the newest
live version, and the next push recreates the tag).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    union,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased, joinedload, selectinload
from sqlalchemy.sql.sqltypes import NullType
from sqlalchemy.sql.visitors import InternalTraversal

from loreg.db.base import utcnow
from loreg.db.models import (
    Adapter,
    AdapterVersion,
    BaseModelRecord,
    Job,
    Membership,
    Namespace,
    Tag,
    User,
    ValidationState,
    VersionFile,
    VersionLabel,
    VersionTargetModule,
    Visibility,
)
from loreg.db.session import dialect_insert, is_postgres
from loreg.errors import Conflict, Incompatible, InvalidInput, NotFound
from loreg.formats.compat import check_compatibility
from loreg.formats.peft import WEIGHTS_NAME, describe_adapter
from loreg.formats.peft_config import CONFIG_NAME, MAX_CONFIG_BYTES
from loreg.formats.peft_config import parse_config as parse_adapter_config
from loreg.formats.report import CompatibilityReport
from loreg.formats.safetensors import read_header
from loreg.formats.types import AdapterDescription
from loreg.refs import (
    DEFAULT_TAG,
    FileEntry,
    manifest_digest,
    parse_adapter_name,
    parse_ref,
    parse_version_selector,
    validate_base_name,
    validate_tag,
)
from loreg.services import audit, bases, blobs, events, quotas, reads
from loreg.services.accounts import get_namespace
from loreg.services.manifests import check_entries, require_blobs
from loreg.services.pagination import (
    DEFAULT_LIMIT,
    Page,
    check_limit,
    cursor_int,
    decode_cursor,
    page_of,
)
from loreg.services.permissions import (
    Actor,
    Principal,
    adapter_not_found,
    require_admin_adapter,
    require_read_adapter,
    require_scope,
    require_write_adapter,
    require_write_namespace,
)
from loreg.services.text import storable
from loreg.storage import BlobStore

log = logging.getLogger("loreg.services")

#: Attempts of a push that loses a race (see ``push_version``), and the wait before the
#: n-th retry (``PUSH_BACKOFF * n`` seconds).
PUSH_ATTEMPTS = 5
PUSH_BACKOFF = 0.05
MAX_DESCRIPTION = 10_000
MAX_LABELS = 64
MAX_TAGS = 32
MAX_LABEL_VALUE = 512
MAX_TEXT_QUERY = 256
#: Findings of each kind a compatibility report keeps (the rest are counted, not listed).
REPORT_FINDINGS_MAX = 100
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")
LabelValue = str | int | float | bool


# --------------------------------------------------------------------------- inputs


@dataclass
class PushSpec:
    """The body of ``POST /adapters/{ns}/{name}/versions``."""

    files: list[FileEntry]
    base: str | None = None
    tags: list[str] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    public: bool | None = None


@dataclass
class PushOutcome:
    version: AdapterVersion
    created: bool
    job: Job | None = None


@dataclass
class SearchFilters:
    namespace: str | None = None
    base: str | None = None
    target: str | None = None
    rank_min: int | None = None
    rank_max: int | None = None
    labels: list[str] = field(default_factory=list)  # "key=value"
    text: str | None = None


def label_text(value: Any) -> str:
    """How a label value is stored in the side table and matched by ``label=key=value``."""
    return value if isinstance(value, str) else json.dumps(value)


def check_labels(labels: Any) -> dict[str, LabelValue]:
    if not isinstance(labels, dict):
        raise InvalidInput("labels must be an object of key: value", details={"field": "labels"})
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"at most {MAX_LABELS} labels", details={"count": len(labels)})
    out: dict[str, LabelValue] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            raise InvalidInput(
                f"invalid label key {str(key)[:100]!r}: letters, digits and . _ / - "
                "(at most 128, starting with a letter or digit)",
                details={"label": str(key)[:100]},
            )
        if not isinstance(value, str | int | float | bool) or (
            isinstance(value, float) and value != value  # NaN
        ):
            raise InvalidInput(
                f"label {key!r}: values are strings, numbers or booleans", details={"label": key}
            )
        if len(label_text(value)) > MAX_LABEL_VALUE:
            raise InvalidInput(
                f"label {key!r}: value longer than {MAX_LABEL_VALUE}", details={"label": key}
            )
        if isinstance(value, str):
            storable(value, field=f"label {key!r}")
        out[key] = value
    return out


def _check_description(description: str | None) -> str | None:
    if description is not None and (
        not isinstance(description, str) or len(description) > MAX_DESCRIPTION
    ):
        raise InvalidInput(
            f"description must be at most {MAX_DESCRIPTION} characters",
            details={"field": "description"},
        )
    if description is not None:
        storable(description, field="description")
    return description


def _parse_label_filter(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not _LABEL_KEY.fullmatch(key) or len(value) > MAX_LABEL_VALUE:
        raise InvalidInput(
            f"invalid label filter {item[:100]!r}: expected key=value", details={"field": "label"}
        )
    return key, storable(value, field="label filter")


# --------------------------------------------------------------------------- lookups


def find_adapter(session: Session, namespace: str, name: str) -> Adapter | None:
    parsed = parse_adapter_name(namespace, name)
    return session.scalar(
        select(Adapter)
        .join(Namespace, Adapter.namespace_id == Namespace.id)
        .where(Namespace.name == parsed.namespace, Adapter.name == parsed.name)
    )


def get_adapter(session: Session, actor: Actor, namespace: str, name: str) -> Adapter:
    """The adapter if ``actor`` may read it; ``NotFound`` alike for missing and hidden."""
    adapter = find_adapter(session, namespace, name)
    if adapter is None:
        raise adapter_not_found(namespace, name)
    require_read_adapter(session, actor, adapter)
    return adapter


def _automatic_latest(adapter: Adapter, version: AdapterVersion) -> Tag:
    """The ``latest`` tag as loreg moves it (no user set it): on ``version``."""
    return Tag(
        adapter_id=adapter.id,
        name=DEFAULT_TAG,
        version_id=version.id,
        updated_by=None,
        updated_at=utcnow(),
    )


def _live() -> Any:
    return AdapterVersion.deleted_at.is_(None)


def _find_version(
    session: Session, adapter: Adapter, kind: str, value: str, *, include_deleted: bool = False
) -> AdapterVersion | None:
    cond = [AdapterVersion.adapter_id == adapter.id]
    if not include_deleted:
        cond.append(_live())
    if kind == "number":
        cond.append(AdapterVersion.number == int(value))
    elif kind == "digest":
        cond.append(AdapterVersion.digest == value)
    else:
        tag = session.scalar(select(Tag).where(Tag.adapter_id == adapter.id, Tag.name == value))
        if tag is not None:
            cond.append(AdapterVersion.id == tag.version_id)
        elif value == DEFAULT_TAG:
            return session.scalar(
                select(AdapterVersion).where(*cond).order_by(AdapterVersion.number.desc()).limit(1)
            )
        else:
            return None
    return session.scalar(select(AdapterVersion).where(*cond))


def _version_not_found(adapter: Adapter, ref: str) -> NotFound:
    full = f"{adapter.namespace.name}/{adapter.name}"
    return NotFound(
        f"no version of '{full}' matches '{ref}'", details={"adapter": full, "ref": ref}
    )


def get_version(
    session: Session,
    actor: Actor,
    namespace: str,
    name: str,
    selector: str,
    *,
    include_deleted: bool = False,
) -> AdapterVersion:
    """A version by number or ``sha256:`` digest (the ``{ref}`` of the versions routes)."""
    adapter = get_adapter(session, actor, namespace, name)
    kind, value = parse_version_selector(selector)
    version = _find_version(session, adapter, kind, value, include_deleted=include_deleted)
    if version is None:
        raise _version_not_found(adapter, selector)
    return version


def resolve(session: Session, actor: Actor, ref: str) -> AdapterVersion:
    """Any reference form of docs/design.md §3 -> a live version the actor may read."""
    parsed = parse_ref(ref)
    adapter = get_adapter(session, actor, parsed.namespace, parsed.name)
    version = _find_version(session, adapter, parsed.kind, parsed.value)
    if version is None:
        raise _version_not_found(adapter, ref)
    return version


def version_ref(version: AdapterVersion) -> str:
    return f"{version.adapter.namespace.name}/{version.adapter.name}@{version.number}"


def tags_of(session: Session, version: AdapterVersion) -> list[str]:
    return list(
        session.scalars(select(Tag.name).where(Tag.version_id == version.id).order_by(Tag.name))
    )


def user_names(session: Session, ids: Sequence[int | None]) -> dict[int, str]:
    """User names by id, in one query for a whole page of rows."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {i: n for i, n in session.execute(select(User.id, User.name).where(User.id.in_(wanted)))}


def version_files(session: Session, version_id: int) -> list[FileEntry]:
    """A version's files (what a job downloads); none for a purged version."""
    return [
        FileEntry(r.path, r.blob_digest, r.size)
        for r in session.scalars(select(VersionFile).where(VersionFile.version_id == version_id))
    ]


def tags_by_version(session: Session, version_ids: Sequence[int]) -> dict[int, list[str]]:
    """The tags pointing at each version (sorted), in one query for a page of versions."""
    tags: dict[int, list[str]] = {}
    if not version_ids:
        return tags
    for vid, name in session.execute(
        select(Tag.version_id, Tag.name)
        .where(Tag.version_id.in_(list(version_ids)))
        .order_by(Tag.name)
    ):
        tags.setdefault(vid, []).append(name)
    return tags


# --------------------------------------------------------------------------- locking


def _lock_adapter(session: Session, adapter_id: int) -> None:
    """Serialise writers of one adapter until the transaction ends (see module docstring)."""
    if is_postgres(session):
        session.execute(select(Adapter.id).where(Adapter.id == adapter_id).with_for_update())
    # On SQLite this UPDATE takes the write lock; on PostgreSQL it is merely a timestamp.
    session.execute(
        update(Adapter)
        .where(Adapter.id == adapter_id)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def _create_or_lock_adapter(
    session: Session, principal: Principal, namespace: Namespace, name: str, public: bool | None
) -> tuple[Adapter, bool]:
    """Insert the adapter unless a concurrent push did; lock it either way."""
    now = utcnow()
    values = {
        "namespace_id": namespace.id,
        "name": name,
        "visibility": (Visibility.PUBLIC if public else Visibility.PRIVATE).value,
        "description": "",
        "created_by": principal.user_id,
        "created_at": now,
        "updated_at": now,
    }
    insert = dialect_insert(session)
    created = (
        session.execute(
            insert(Adapter)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["namespace_id", "name"])
            .returning(Adapter.id)
        ).first()
        is not None
    )
    adapter_id = session.scalar(
        select(Adapter.id).where(Adapter.namespace_id == namespace.id, Adapter.name == name)
    )
    assert adapter_id is not None
    _lock_adapter(session, adapter_id)
    adapter = session.get(Adapter, adapter_id, populate_existing=True)
    assert adapter is not None
    return adapter, created


# --------------------------------------------------------------------------- push


@dataclass
class _Described:
    description: Any
    report: Any
    base: BaseModelRecord


def _stated_base(session: Session, config: dict[str, Any]) -> BaseModelRecord | None:
    """The base named by the config's ``base_model_name_or_path``, if that is registered."""
    stated = config.get("base_model_name_or_path")
    if not isinstance(stated, str):
        return None
    try:
        return bases.find_base(session, stated)
    except InvalidInput:  # not a valid base name (a local path, say)
        return None


def check_against_stated(
    described: AdapterDescription, base: BaseModelRecord, stated: BaseModelRecord | None
) -> CompatibilityReport:
    """Check an adapter against ``base``, knowing which registered base it says it was
    trained on: its config's ``base_model_name_or_path`` when that is registered, else the
    base the pusher named. ``exact`` when that base's fingerprint is the one checked."""
    expected = stated if stated is not None else base
    report = check_compatibility(
        described,
        bases.manifest_of(base),
        expected_fingerprint=expected.fingerprint,
        expected_structure_hash=None if expected.id == base.id else expected.structure_hash,
    )
    if report.match != "exact" and expected.id != base.id:
        report.match_hint = (
            f"{CONFIG_NAME} names the registered base '{expected.name}' ({expected.fingerprint}),"
            f" but it was checked against '{base.name}' ({base.fingerprint}): push it against"
            f" '{expected.name}' (loreg push --base {expected.name}) for an exact match"
        )
    return report


def _read_adapter(
    session: Session,
    store: BlobStore,
    files: Sequence[FileEntry],
    base_name: str | None,
    *,
    max_tensors: int | None = None,
) -> _Described:
    """Config + header through the store, described and checked against the base."""
    by_path = {f.path: f for f in files}
    missing = [p for p in (CONFIG_NAME, WEIGHTS_NAME) if p not in by_path]
    if missing:
        raise InvalidInput(
            f"a PEFT adapter needs {CONFIG_NAME} and {WEIGHTS_NAME} at the top level; "
            f"missing: {', '.join(missing)}",
            details={"missing": missing},
        )
    cfg = by_path[CONFIG_NAME]
    if cfg.size > MAX_CONFIG_BYTES:
        raise InvalidInput(
            f"{CONFIG_NAME} is larger than {MAX_CONFIG_BYTES} bytes", details={"size": cfg.size}
        )
    config = parse_adapter_config(store.read_range(cfg.digest, 0, cfg.size), name=CONFIG_NAME)
    weights = by_path[WEIGHTS_NAME]

    def read_range(start: int, length: int) -> bytes:
        return store.read_range(weights.digest, start, length)

    header = read_header(read_range, name=WEIGHTS_NAME, size=weights.size, max_tensors=max_tensors)
    described = describe_adapter(config, header, size_bytes=weights.size)

    stated = _stated_base(session, config)
    if base_name is None:
        base = stated
        if base is None:
            raise InvalidInput(
                "name the base model this adapter was trained on ('base'); "
                f"{CONFIG_NAME}'s base_model_name_or_path is not a registered base model",
                details={
                    "field": "base",
                    "base_model_name_or_path": str(config.get("base_model_name_or_path")),
                },
            )
    else:
        base = bases.find_base(session, base_name)
        if base is None:
            raise InvalidInput(
                f"base model '{base_name}' is not registered (loreg base register DIR --name NAME)",
                details={"field": "base", "base": base_name},
            )
    report = check_against_stated(described, base, stated)
    if not report.ok:
        text = report.format(max_chars=4000)
        raise Incompatible(
            f"adapter is incompatible with base model '{base.name}':\n{text}",
            details=report.to_dict(limit=REPORT_FINDINGS_MAX),
        )
    return _Described(described, report, base)


def _target_modules(described: Any) -> list[str]:
    """Module names for the searchable side table: the config's list plus the leaf names of
    every module the adapter actually wraps (so a regex ``target_modules`` is searchable)."""
    names: set[str] = set()
    if isinstance(described.target_modules, list):
        names.update(str(t) for t in described.target_modules)
    for module in described.modules.values():
        if module.kind == "parameter":  # LoRA on parameters: searchable by parameter name
            names.update(module.parameters)
        else:
            names.add(module.name.rsplit(".", 1)[-1])
    names.update(m.rsplit(".", 1)[-1] for m in described.token_modules)
    return sorted(n for n in names if 0 < len(n) <= 512)


def _apply_tags(
    session: Session,
    principal: Principal,
    adapter: Adapter,
    version: AdapterVersion,
    tags: Sequence[str],
) -> list[str]:
    """Point the requested tags at ``version``; ``latest`` moves unless pinned. Returns the
    tags that moved."""
    moved: list[str] = []
    existing = {t.name: t for t in session.scalars(select(Tag).where(Tag.adapter_id == adapter.id))}
    latest = existing.get(DEFAULT_TAG)
    newest = session.scalar(
        select(func.max(AdapterVersion.number)).where(
            AdapterVersion.adapter_id == adapter.id, _live()
        )
    )
    auto = latest is None or latest.updated_by is None
    if (auto and version.number == newest) or DEFAULT_TAG in tags:
        if latest is None:
            session.add(_automatic_latest(adapter, version))
            moved.append(DEFAULT_TAG)
        elif latest.version_id != version.id or latest.updated_by is not None:
            if latest.protected and DEFAULT_TAG in tags:
                require_admin_adapter(session, principal, adapter)
            latest.version_id = version.id
            latest.updated_by = None
            latest.updated_at = utcnow()
            moved.append(DEFAULT_TAG)
    for name in tags:
        if name == DEFAULT_TAG:
            continue
        tag = existing.get(name)
        if tag is None:
            session.add(
                Tag(
                    adapter_id=adapter.id,
                    name=name,
                    version_id=version.id,
                    updated_by=principal.user_id,
                    updated_at=utcnow(),
                )
            )
            moved.append(name)
        elif tag.version_id != version.id:
            if tag.protected:
                require_admin_adapter(session, principal, adapter)
            tag.version_id = version.id
            tag.updated_by = principal.user_id
            tag.updated_at = utcnow()
            moved.append(name)
    session.flush()
    events.tags_moved(session, adapter, version, moved)
    return moved


def _answer_existing(
    session: Session,
    principal: Principal,
    adapter: Adapter,
    same: AdapterVersion,
    tags: Sequence[str],
) -> PushOutcome:
    """Identical content was pushed before: move the requested tags to that version."""
    moved = _apply_tags(session, principal, adapter, same, tags)
    if moved:
        audit.record(
            session,
            principal,
            "tag.set",
            "adapter",
            f"{adapter.namespace.name}/{adapter.name}",
            {"tags": moved, "version": same.number, "via": "push"},
        )
    return PushOutcome(same, created=False)


class ConcurrentPush(Conflict):
    """A push lost a race with another change of the adapter ``PUSH_ATTEMPTS`` times."""


def push_version(
    session: Session,
    store: BlobStore,
    actor: Actor,
    namespace: str,
    name: str,
    spec: PushSpec,
    *,
    max_version_bytes: int | None = None,
    max_tensors: int | None = None,
) -> PushOutcome:
    """Create a version from a manifest of uploaded blobs (or answer the identical one).

    The caller must hold every blob it names (``loreg.services.blobs``); the new version's
    namespace then holds them too. ``max_tensors`` bounds the tensors the adapter's header
    may list (``LOREG_MAX_ADAPTER_TENSORS``), so one push costs bounded work.

    The push serialises on its adapter; a race the lock cannot cover (two first pushes
    creating one adapter, a SQLite snapshot gone stale) makes the database refuse a write,
    and the push is run again, up to ``PUSH_ATTEMPTS`` times (then ``ConcurrentPush``).
    Each attempt's writes are undone on their own (see :func:`_undoable`): what the caller
    wrote earlier in the transaction stays.
    """
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        try:
            with _undoable(session):
                return _push_once(
                    session,
                    store,
                    actor,
                    namespace,
                    name,
                    spec,
                    max_version_bytes=max_version_bytes,
                    max_tensors=max_tensors,
                )
        except (IntegrityError, OperationalError) as exc:
            if attempt == PUSH_ATTEMPTS:
                log.warning(
                    "push to %s/%s gave up after %d attempts: %s", namespace, name, attempt, exc
                )
                raise ConcurrentPush(
                    "the adapter is being changed concurrently; try again"
                ) from None
            time.sleep(PUSH_BACKOFF * attempt)
    raise AssertionError("unreachable")


@contextmanager
def _undoable(session: Session) -> Iterator[None]:
    """A scope whose writes a refused statement undoes, and only those.

    A savepoint, where the transaction has begun. SQLite's driver begins it only at the
    first write, and a savepoint taken before that would *be* the transaction (releasing it
    would commit); there, nothing of the caller's is written yet, so rolling the session
    back undoes exactly this scope's writes.
    """
    session.flush()
    if is_postgres(session) or _sqlite_in_transaction(session):
        with session.begin_nested():
            yield
        return
    try:
        yield
        session.flush()
    except (IntegrityError, OperationalError):
        session.rollback()
        raise


def _sqlite_in_transaction(session: Session) -> bool:
    dbapi = session.connection().connection.dbapi_connection
    return bool(getattr(dbapi, "in_transaction", False))


def _push_once(
    session: Session,
    store: BlobStore,
    actor: Actor,
    namespace: str,
    name: str,
    spec: PushSpec,
    *,
    max_version_bytes: int | None,
    max_tensors: int | None,
) -> PushOutcome:
    parsed = parse_adapter_name(namespace, name)
    principal = require_scope(actor, "write")
    ns = get_namespace(session, parsed.namespace)
    # The namespace decides, before the adapter is even looked up: whoever may not write
    # here gets the same answer whether or not a (private) adapter of that name exists.
    require_write_namespace(session, principal, ns)
    adapter = find_adapter(session, parsed.namespace, parsed.name)
    if adapter is not None:
        _refuse_visibility_change(adapter, spec.public)

    if not isinstance(spec.tags, list) or len(spec.tags) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags", details={"field": "tags"})
    tags = list(dict.fromkeys(validate_tag(t) for t in spec.tags))
    labels = check_labels(spec.labels)
    description = _check_description(spec.description)
    if spec.base is not None:
        validate_base_name(spec.base)
    if not spec.files:
        raise InvalidInput("the manifest lists no files", details={"field": "files"})
    files = check_entries(spec.files, max_total=max_version_bytes)
    digest = manifest_digest(files)

    def existing_version() -> AdapterVersion | None:
        assert adapter is not None
        found = session.scalar(
            select(AdapterVersion).where(
                AdapterVersion.adapter_id == adapter.id, AdapterVersion.digest == digest
            )
        )
        if found is not None and found.deleted_at is not None:
            raise Conflict(
                f"this content was pushed as version {found.number}, which has been deleted; "
                "a deleted version's content cannot be pushed again unchanged",
                details={"number": found.number, "digest": digest},
            )
        return found

    if adapter is not None and (same := existing_version()) is not None:
        _lock_adapter(session, adapter.id)
        return _answer_existing(session, principal, adapter, same, tags)

    require_blobs(session, principal, files)
    quotas.check_quota(session, ns, sum(f.size for f in files))
    described = _read_adapter(session, store, files, spec.base, max_tensors=max_tensors)
    desc = described.description

    # ---- writes start here: lock (or create) the adapter, then allocate the number
    adapter, adapter_created = _create_or_lock_adapter(
        session, principal, ns, parsed.name, spec.public
    )
    if not adapter_created and (same := existing_version()) is not None:
        return _answer_existing(session, principal, adapter, same, tags)
    if adapter_created:
        audit.record(
            session,
            principal,
            "adapter.create",
            "adapter",
            str(parsed),
            {"visibility": adapter.visibility},
        )
    else:
        _refuse_visibility_change(adapter, spec.public)
    if description and not adapter.description:
        adapter.description = description

    number = (
        session.scalar(
            select(func.max(AdapterVersion.number)).where(AdapterVersion.adapter_id == adapter.id)
        )
        or 0
    ) + 1
    target_modules = _target_modules(desc)
    version = AdapterVersion(
        adapter_id=adapter.id,
        number=number,
        digest=digest,
        peft_type=desc.peft_type,
        r=desc.r,
        lora_alpha=desc.lora_alpha,
        use_rslora=desc.use_rslora,
        use_dora=desc.use_dora,
        rank_pattern=dict(desc.rank_pattern),
        alpha_pattern=dict(desc.alpha_pattern),
        target_modules=desc.target_modules,
        modules_to_save=list(desc.modules_to_save) or None,
        fan_in_fan_out=desc.fan_in_fan_out,
        dtype=desc.dtype,
        num_parameters=desc.num_parameters,
        size_bytes=desc.size_bytes,
        adapter_config=desc.config,
        base_model_id=described.base.id,
        base_model_name=desc.base_model_name_or_path,
        labels=labels,
        description=description or "",
        created_by=principal.user_id,
        created_at=utcnow(),
        validation_state=ValidationState.PENDING.value,
        compatibility_report=described.report.to_dict(limit=REPORT_FINDINGS_MAX),
        files=[VersionFile(path=f.path, blob_digest=f.digest, size=f.size) for f in files],
        target_module_rows=[VersionTargetModule(module=m) for m in target_modules],
        label_rows=[VersionLabel(key=k, value=label_text(v)) for k, v in labels.items()],
    )
    version.adapter = adapter
    session.add(version)
    session.flush()
    blobs.grant(session, (f.digest for f in files), adapter.namespace_id)
    _apply_tags(session, principal, adapter, version, tags)

    from loreg.services import jobs

    job = jobs.enqueue_validation(session, version, submitted_by=principal.user_id)
    audit.record(
        session,
        principal,
        "version.push",
        "version",
        f"{parsed}@{number}",
        {"digest": digest, "base": described.base.name, "tags": tags, "job_id": job.id},
    )
    events.version_created(session, version)
    return PushOutcome(version, created=True, job=job)


# --------------------------------------------------------------------------- adapters


def _refuse_visibility_change(adapter: Adapter, public: bool | None) -> None:
    """A push states visibility for a new adapter only: publishing or hiding the versions an
    adapter already has is an explicit change (``PATCH`` the adapter), never a side effect."""
    if public is None or (adapter.visibility == Visibility.PUBLIC.value) == public:
        return
    full = f"{adapter.namespace.name}/{adapter.name}"
    wanted = "public" if public else "private"
    raise Conflict(
        f"'{full}' is {adapter.visibility}; a push does not change the visibility of an "
        f"existing adapter. Push without public/private, or change it first with "
        f"'loreg adapter set {full} --{wanted}' (PATCH /api/v1/adapters/{full})",
        details={"adapter": full, "visibility": adapter.visibility, "requested": wanted},
    )


def create_adapter(
    session: Session,
    actor: Actor,
    namespace: str,
    name: str,
    *,
    public: bool | None = None,
) -> tuple[Adapter, bool]:
    """An adapter without versions yet (what the Hub protocol's ``create_repo`` makes), or
    the existing one: ``(adapter, created)``. Needs write access to the namespace."""
    parsed = parse_adapter_name(namespace, name)
    principal = require_scope(actor, "write")
    ns = get_namespace(session, parsed.namespace)
    require_write_namespace(session, principal, ns)
    adapter, created = _create_or_lock_adapter(session, principal, ns, parsed.name, public)
    if created:
        audit.record(
            session,
            principal,
            "adapter.create",
            "adapter",
            str(parsed),
            {"visibility": adapter.visibility},
        )
    return adapter, created


def _set_visibility(session: Session, principal: Principal, adapter: Adapter, public: bool) -> None:
    require_admin_adapter(session, principal, adapter)
    value = (Visibility.PUBLIC if public else Visibility.PRIVATE).value
    if adapter.visibility != value:
        adapter.visibility = value
        audit.record(
            session,
            principal,
            "adapter.visibility",
            "adapter",
            f"{adapter.namespace.name}/{adapter.name}",
            {"visibility": value},
        )


def update_adapter(
    session: Session,
    actor: Actor,
    namespace: str,
    name: str,
    *,
    public: bool | None = None,
    description: str | None = None,
) -> Adapter:
    """Visibility needs the namespace's admin role (it publishes data); description write."""
    adapter = get_adapter(session, actor, namespace, name)
    principal = require_write_adapter(session, actor, adapter)
    _check_description(description)
    if public is not None:
        _set_visibility(session, principal, adapter, public)
    if description is not None and description != adapter.description:
        adapter.description = description
        audit.record(
            session,
            principal,
            "adapter.update",
            "adapter",
            f"{adapter.namespace.name}/{adapter.name}",
            {"fields": ["description"]},
        )
    adapter.updated_at = utcnow()
    session.flush()
    return adapter


@dataclass
class AdapterSummary:
    adapter: Adapter
    latest: AdapterVersion | None
    versions_count: int
    tags: dict[str, int] = field(default_factory=dict)


def summarize(session: Session, adapters: Sequence[Adapter]) -> list[AdapterSummary]:
    """Latest live version, live version count and tags of each adapter, in few queries."""
    ids = [a.id for a in adapters]
    if not ids:
        return []
    stats = {
        aid: (mx, n)
        for aid, mx, n in session.execute(
            select(AdapterVersion.adapter_id, func.max(AdapterVersion.number), func.count())
            .where(AdapterVersion.adapter_id.in_(ids), _live())
            .group_by(AdapterVersion.adapter_id)
        )
    }
    conds = [
        and_(AdapterVersion.adapter_id == aid, AdapterVersion.number == mx)
        for aid, (mx, _) in stats.items()
    ]
    latest: dict[int, AdapterVersion] = {}
    if conds:
        for v in session.scalars(
            select(AdapterVersion)
            .where(or_(*conds))
            .options(selectinload(AdapterVersion.base_model))
        ):
            latest[v.adapter_id] = v
    tags: dict[int, dict[str, int]] = {}
    for aid, tname, number in session.execute(
        select(Tag.adapter_id, Tag.name, AdapterVersion.number)
        .join(AdapterVersion, AdapterVersion.id == Tag.version_id)
        .where(Tag.adapter_id.in_(ids))
    ):
        tags.setdefault(aid, {})[tname] = number
    return [
        AdapterSummary(a, latest.get(a.id), stats.get(a.id, (0, 0))[1], tags.get(a.id, {}))
        for a in adapters
    ]


#: How many of the newest readable adapters a text search reads before it turns to the
#: text indexes (see ``search_rows``).
TEXT_WINDOW = 1000


@dataclass(frozen=True)
class _Shape:
    """Which filters a search has (not their values): one cached statement per shape, so
    a search costs its parameters, not building and hashing a statement."""

    viewer: str  # "anonymous", "member" (public + own namespaces) or "admin" (everything)
    namespace: bool = False
    base: bool = False
    target: bool = False
    rank_min: bool = False
    rank_max: bool = False
    labels: int = 0
    text: bool = False
    cursor: bool = False


def _escape_like(text: str) -> str:
    """``text`` as a LIKE pattern matching itself anywhere (escape character ``/``)."""
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


def _search_plan(
    actor: Actor, filters: SearchFilters, cursor: str | None
) -> tuple[_Shape, dict[str, Any]]:
    """Check the filters; their shape and the statement's parameters."""
    params: dict[str, Any] = {}
    viewer = "anonymous" if actor is None else "admin" if actor.is_admin else "member"
    if actor is not None:
        params.update(uid=actor.user_id, own_namespace=actor.namespace_id)
    if filters.namespace is not None:
        parse_adapter_name(filters.namespace, "x")
        params["namespace"] = filters.namespace
    if filters.base is not None:
        params["base"] = validate_base_name(filters.base)
    if filters.target is not None:
        if not filters.target or len(filters.target) > 512:
            raise InvalidInput("invalid target module", details={"field": "target"})
        params["target"] = storable(filters.target, field="target")
    for bound, op in ((filters.rank_min, "min"), (filters.rank_max, "max")):
        if bound is not None:
            if not 0 <= bound < 2**31:
                raise InvalidInput(f"rank_{op} out of range", details={"field": f"rank_{op}"})
            params[f"rank_{op}"] = bound
    if len(filters.labels) > MAX_LABELS:
        raise InvalidInput("too many label filters", details={"field": "label"})
    for i, item in enumerate(filters.labels):
        params[f"label_key_{i}"], params[f"label_value_{i}"] = _parse_label_filter(item)
    if filters.text:
        if len(filters.text) > MAX_TEXT_QUERY:
            raise InvalidInput("text query is too long", details={"field": "text"})
        storable(filters.text, field="text query")
        params["pattern"] = _escape_like(filters.text.lower())
    after = cursor_int(decode_cursor("adapters", cursor), "id")
    if after is not None:
        params["after"] = after
    shape = _Shape(
        viewer,
        "namespace" in params,
        "base" in params,
        "target" in params,
        "rank_min" in params,
        "rank_max" in params,
        len(filters.labels),
        "pattern" in params,
        after is not None,
    )
    return shape, params


def _conditions(shape: _Shape) -> list[Any]:
    """The WHERE conditions of a search of that shape, but its text (bound parameters)."""
    conds: list[Any] = []
    public = Adapter.visibility == Visibility.PUBLIC.value
    if shape.viewer == "anonymous":
        conds.append(public)
    elif shape.viewer == "member":  # readable_namespace_ids, as a subquery
        conds.append(
            or_(
                public,
                Adapter.namespace_id == bindparam("own_namespace"),
                Adapter.namespace_id.in_(
                    select(Membership.namespace_id).where(Membership.user_id == bindparam("uid"))
                ),
            )
        )
    if shape.namespace:
        conds.append(
            Adapter.namespace_id
            == select(Namespace.id)
            .where(Namespace.name == bindparam("namespace"))
            .scalar_subquery()
        )
    vconds: list[Any] = []
    if shape.base:
        vconds.append(
            AdapterVersion.base_model_id
            == select(BaseModelRecord.id)
            .where(BaseModelRecord.name == bindparam("base"))
            .scalar_subquery()
        )
    if shape.target:
        vconds.append(
            exists().where(
                VersionTargetModule.version_id == AdapterVersion.id,
                VersionTargetModule.module == bindparam("target"),
            )
        )
    if shape.rank_min:
        vconds.append(AdapterVersion.r >= bindparam("rank_min"))
    if shape.rank_max:
        vconds.append(AdapterVersion.r <= bindparam("rank_max"))
    for i in range(shape.labels):
        vconds.append(
            exists().where(
                VersionLabel.version_id == AdapterVersion.id,
                VersionLabel.key == bindparam(f"label_key_{i}"),
                VersionLabel.value == bindparam(f"label_value_{i}"),
            )
        )
    if vconds:
        conds.append(exists().where(AdapterVersion.adapter_id == Adapter.id, _live(), *vconds))
    if shape.cursor:
        conds.append(Adapter.id < bindparam("after"))
    return conds


def _contains(column: Any) -> Any:
    return func.lower(column).like(bindparam("pattern"), escape="/")


def _text_scanned(adapter: Any) -> Any:
    """The text match, evaluated row by row on ``adapter`` rows (a bounded run of them); the
    versions' descriptions are matched once, as a set (a trigram index on PostgreSQL)."""
    return or_(
        _contains(adapter.name),
        _contains(adapter.description),
        adapter.id.in_(
            select(AdapterVersion.adapter_id).where(_live(), _contains(AdapterVersion.description))
        ),
    )


def _text_indexed() -> Any:
    """The same match as a set of adapter ids, each part answerable by a trigram index
    (PostgreSQL, migration 0004): its cost follows the number of matches."""
    matched = union(
        select(Adapter.id.label("id")).where(_contains(Adapter.name)),
        select(Adapter.id).where(_contains(Adapter.description)),
        select(AdapterVersion.adapter_id).where(_live(), _contains(AdapterVersion.description)),
    ).subquery("matched")
    return _one_of(Adapter.id, select(matched.c.id))


class _one_of(ColumnElement[Any]):
    """``column IN (ids)``; on PostgreSQL ``column = ANY(ARRAY(ids))``, so the planner
    collects the (few) matching ids first and fetches their rows by key. With ``IN`` it may
    instead walk the whole table in key order to meet them (a merge join), a cost that
    grows with the table however few the matches."""

    inherit_cache = True
    type = NullType()  # a condition as written, not a boolean column SQLite compares to 1
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("ids", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: Any, ids: Select[Any]) -> None:
        self.column = column
        self.ids = ids


@compiles(_one_of)
def _one_of_in(element: _one_of, compiler: Any, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} IN ({compiler.process(element.ids, **kw)})"


@compiles(_one_of, "postgresql")
def _one_of_any_array(element: _one_of, compiler: Any, **kw: Any) -> str:
    return (
        f"{compiler.process(element.column, **kw)} = "
        f"ANY(ARRAY({compiler.process(element.ids, **kw)}))"
    )


#: Builds the select of a search page's columns from an adapters entity (the table, or
#: an alias of a subquery of it); its first column must be the adapter's id. Pass a
#: module-level function: statements are cached per (columns, shape).
PageColumns = Callable[[Any], Select[*tuple[Any, ...]]]


@functools.lru_cache(maxsize=512)
def _search_statements(page: PageColumns, shape: _Shape) -> tuple[Any, ...]:
    """(the search,) or, with text, (newest adapters first, then by the text indexes)."""
    conds = _conditions(shape)
    newest_first = Adapter.id.desc()
    limit: Any = bindparam("limit")
    if not shape.text:
        return (page(Adapter).where(*conds).order_by(newest_first).limit(limit),)
    window = aliased(
        Adapter,
        select(Adapter).where(*conds).order_by(newest_first).limit(TEXT_WINDOW).subquery("recent"),
    )
    return (
        page(window).where(_text_scanned(window)).order_by(window.id.desc()).limit(limit),
        page(Adapter).where(*conds, _text_indexed()).order_by(newest_first).limit(limit),
    )


def search_rows(
    session: reads.Db,
    actor: Actor,
    filters: SearchFilters,
    page: PageColumns,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[Any]:
    """Rows of ``page`` for the adapters the actor may read that match ``filters``, newest
    first, ``limit + 1`` of them (the extra one says a next page exists). Version filters
    (base, target, rank, labels) must all hold for one live version.

    A text search reads the newest ``TEXT_WINDOW`` matching adapters first, in order, until
    the page is full: a common word fills it there, at a cost that does not grow with the
    registry. Otherwise the matches are few, and the text indexes find them wherever they
    are.
    """
    check_limit(limit)
    shape, params = _search_plan(actor, filters, cursor)
    params["limit"] = limit + 1
    conn = reads.connection_of(session)
    statements = _search_statements(page, shape)
    rows = list(conn.execute(statements[0], params))
    if len(statements) == 1 or len(rows) > limit:
        return rows
    return list(conn.execute(statements[1], params))


def _ids_only(adapter: Any) -> Select[*tuple[Any, ...]]:
    return select(adapter.id)


def search(
    session: Session,
    actor: Actor,
    filters: SearchFilters,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[AdapterSummary]:
    """Adapters the actor may read, newest first, as ORM summaries (the web page); the API
    reads plain values with ``search_views``."""
    ids = [
        row[0]
        for row in search_rows(session, actor, filters, _ids_only, cursor=cursor, limit=limit)
    ]
    by_id = {
        a.id: a
        for a in session.scalars(
            select(Adapter).where(Adapter.id.in_(ids)).options(joinedload(Adapter.namespace))
        )
    }
    rows = [by_id[i] for i in ids if i in by_id]
    page = page_of(rows, limit, "adapters", lambda a: {"id": a.id})
    return Page(summarize(session, page.items), page.next_cursor)


def search_views(
    session: reads.Db,
    actor: Actor,
    filters: SearchFilters,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[reads.AdapterView]:
    """``search`` as plain values, in a fixed number of queries whatever the page size."""
    rows = search_rows(
        session, actor, filters, reads.adapter_page_columns, cursor=cursor, limit=limit
    )
    return reads.adapter_page(rows, limit)


# --------------------------------------------------------------------------- versions


def list_versions(
    session: Session,
    actor: Actor,
    namespace: str,
    name: str,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
    include_deleted: bool = False,
) -> Page[AdapterVersion]:
    """Newest first."""
    check_limit(limit)
    adapter = get_adapter(session, actor, namespace, name)
    stmt = select(AdapterVersion).where(AdapterVersion.adapter_id == adapter.id)
    if not include_deleted:
        stmt = stmt.where(_live())
    after = cursor_int(decode_cursor("versions", cursor), "n")
    if after is not None:
        stmt = stmt.where(AdapterVersion.number < after)
    rows = list(
        session.scalars(
            stmt.order_by(AdapterVersion.number.desc())
            .limit(limit + 1)
            .options(selectinload(AdapterVersion.files), selectinload(AdapterVersion.base_model))
        )
    )
    return page_of(rows, limit, "versions", lambda v: {"n": v.number})


def delete_version(
    session: Session,
    actor: Actor,
    namespace: str,
    name: str,
    selector: str,
    reason: str,
) -> AdapterVersion:
    """Soft delete: the row, its digest and its blobs stay; tags on it go; ``latest`` falls
    back to the newest live version. Protected tags on it need the namespace's admin."""
    adapter = get_adapter(session, actor, namespace, name)
    principal = require_write_adapter(session, actor, adapter)
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 1000:
        raise InvalidInput("give a reason (1-1000 characters)", details={"field": "reason"})
    storable(reason, field="reason")
    kind, value = parse_version_selector(selector)
    version = _find_version(session, adapter, kind, value)
    if version is None:
        raise _version_not_found(adapter, selector)
    _lock_adapter(session, adapter.id)
    session.refresh(version)
    if version.deleted_at is not None:
        raise _version_not_found(adapter, selector)
    on_it = list(session.scalars(select(Tag).where(Tag.version_id == version.id)))
    if any(t.protected for t in on_it):
        require_admin_adapter(session, principal, adapter)
    version.deleted_at = utcnow()
    version.deleted_by = principal.user_id
    version.delete_reason = reason.strip()
    removed = [t.name for t in on_it]
    for t in on_it:
        session.delete(t)
    session.flush()
    if DEFAULT_TAG in removed:
        newest = session.scalar(
            select(AdapterVersion)
            .where(AdapterVersion.adapter_id == adapter.id, _live())
            .order_by(AdapterVersion.number.desc())
            .limit(1)
        )
        if newest is not None:
            session.add(_automatic_latest(adapter, newest))
    session.flush()
    audit.record(
        session,
        principal,
        "version.delete",
        "version",
        version_ref(version),
        {"reason": version.delete_reason, "tags_removed": removed},
    )
    return version


def restore_version(
    session: Session,
    actor: Actor,
    namespace: str,
    name: str,
    selector: str,
) -> AdapterVersion:
    """Undo a soft delete: the version resolves again under its number and digest. Tags it
    lost stay gone; an automatic ``latest`` moves to it when it is now the newest."""
    adapter = get_adapter(session, actor, namespace, name)
    principal = require_write_adapter(session, actor, adapter)
    kind, value = parse_version_selector(selector)
    if kind == "tag":
        raise InvalidInput(
            "name a deleted version by number or digest (a tag cannot point at a deleted version)",
            details={"field": "ref", "ref": selector},
        )
    _lock_adapter(session, adapter.id)
    version = _find_version(session, adapter, kind, value, include_deleted=True)
    if version is None:
        raise _version_not_found(adapter, selector)
    session.refresh(version)
    if version.deleted_at is None:
        raise Conflict(f"{version_ref(version)} is not deleted", details={"number": version.number})
    version.deleted_at = None
    version.deleted_by = None
    version.delete_reason = None
    session.flush()
    _apply_tags(session, principal, adapter, version, [])
    audit.record(session, principal, "version.restore", "version", version_ref(version), {})
    return version


# --------------------------------------------------------------------------- tags


def list_tags(session: Session, actor: Actor, namespace: str, name: str) -> list[Tag]:
    adapter = get_adapter(session, actor, namespace, name)
    return list(
        session.scalars(
            select(Tag)
            .where(Tag.adapter_id == adapter.id)
            .order_by(Tag.name)
            .options(selectinload(Tag.version))
        )
    )


def set_tag(
    session: Session,
    actor: Actor,
    namespace: str,
    name: str,
    tag: str,
    selector: str,
    *,
    protected: bool | None = None,
) -> Tag:
    """Point ``tag`` at a live version (create or move). Moving or (un)protecting a protected
    tag, or protecting one, needs the namespace's admin role. Setting ``latest`` pins it."""
    adapter = get_adapter(session, actor, namespace, name)
    principal = require_write_adapter(session, actor, adapter)
    validate_tag(tag)
    kind, value = parse_version_selector(selector)
    _lock_adapter(session, adapter.id)
    version = _find_version(session, adapter, kind, value)
    if version is None:
        raise _version_not_found(adapter, selector)
    row = session.scalar(select(Tag).where(Tag.adapter_id == adapter.id, Tag.name == tag))
    if (row is not None and row.protected) or protected:
        require_admin_adapter(session, principal, adapter)
    before = None if row is None else row.version_id
    if row is None:
        row = Tag(
            adapter_id=adapter.id,
            name=tag,
            version_id=version.id,
            protected=bool(protected),
            updated_by=principal.user_id,
            updated_at=utcnow(),
        )
        session.add(row)
    else:
        row.version_id = version.id
        row.updated_by = principal.user_id
        row.updated_at = utcnow()
        if protected is not None:
            row.protected = protected
    row.version = version
    session.flush()
    audit.record(
        session,
        principal,
        "tag.set",
        "tag",
        f"{adapter.namespace.name}/{adapter.name}:{tag}",
        {"version": version.number, "previous_version_id": before, "protected": row.protected},
    )
    events.tag_moved(session, row, before)
    return row


def delete_tag(session: Session, actor: Actor, namespace: str, name: str, tag: str) -> None:
    """Remove a tag; deleting ``latest`` returns it to following the newest version."""
    adapter = get_adapter(session, actor, namespace, name)
    principal = require_write_adapter(session, actor, adapter)
    validate_tag(tag)
    _lock_adapter(session, adapter.id)
    row = session.scalar(select(Tag).where(Tag.adapter_id == adapter.id, Tag.name == tag))
    if row is None:
        raise NotFound(f"tag '{tag}' not found", details={"tag": tag})
    if row.protected:
        require_admin_adapter(session, principal, adapter)
    session.delete(row)
    session.flush()
    audit.record(
        session,
        principal,
        "tag.delete",
        "tag",
        f"{adapter.namespace.name}/{adapter.name}:{tag}",
        {},
    )


__all__ = [
    "AdapterSummary",
    "ConcurrentPush",
    "PushOutcome",
    "PushSpec",
    "SearchFilters",
    "create_adapter",
    "delete_tag",
    "delete_version",
    "get_adapter",
    "get_version",
    "list_tags",
    "list_versions",
    "push_version",
    "resolve",
    "restore_version",
    "search",
    "search_rows",
    "search_views",
    "set_tag",
    "update_adapter",
]
