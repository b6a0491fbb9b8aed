"""The read path: versions and adapters as plain values, in a fixed number of queries.

Resolving a reference, showing a version, listing versions and searching adapters are what
CI pipelines and serving fleets do all day. Each is answered here with a constant number of
Core queries over plain columns (no ORM objects, no lazy loads), whatever the page size:

- a version (by number, digest, tag or ``latest``): one query for the version with its
  adapter, namespace, base model, creator, tags, files, the caller's membership role and
  whether it has lineage; one more for its lineage only when it has any;
- a page of versions: the same two, for the whole page;
- a page of adapters (search): one, with each adapter's latest live version, live
  version count and tags (two for a text search the newest adapters do not satisfy).

Authorisation is decided by ``loreg.services.permissions.can_read_row`` on the row's own
columns (visibility, namespace, the caller's role, fetched in the same query), with the
same answer as the ORM path: a hidden adapter is ``NotFound`` exactly like a missing one.
Every query is on an index (``bench/api.py`` prints the plans at 1M versions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Select, String, and_, bindparam, exists, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.functions import FunctionElement

from loreg.db.models import (
    Adapter,
    AdapterVersion,
    BaseModelRecord,
    Lineage,
    Membership,
    Namespace,
    Tag,
    User,
    Visibility,
)
from loreg.errors import NotFound
from loreg.refs import DEFAULT_TAG, parse_adapter_name, parse_ref, parse_version_selector
from loreg.services.pagination import (
    DEFAULT_LIMIT,
    Page,
    check_limit,
    cursor_int,
    decode_cursor,
    page_of,
)
from loreg.services.permissions import Actor, adapter_not_found, can_read_row

# --------------------------------------------------------------------------- values


@dataclass
class FileView:
    path: str
    digest: str
    size: int


@dataclass
class LineageView:
    parent: str  # ns/name@N
    weight: float
    method: str
    params: dict[str, Any]


@dataclass
class VersionView:
    """What the API shows of a version (``VersionOut``), as loaded by one query."""

    id: int
    adapter_id: int
    namespace: str
    name: str
    number: int
    digest: str
    peft_type: str
    r: int
    lora_alpha: float
    use_rslora: bool
    use_dora: bool
    rank_pattern: dict[str, Any]
    alpha_pattern: dict[str, Any]
    target_modules: Any
    modules_to_save: list[str] | None
    fan_in_fan_out: bool
    dtype: str | None
    num_parameters: int
    size_bytes: int
    adapter_config: dict[str, Any]
    base_model_name: str | None  # as the adapter's config states it
    labels: dict[str, Any]
    description: str
    created_at: datetime
    validation_state: str
    validation_report: dict[str, Any] | None
    compatibility_report: dict[str, Any] | None
    deleted_at: datetime | None
    delete_reason: str | None
    base_name: str | None
    base_fingerprint: str | None
    created_by: str | None
    tags: list[str]
    files: list[FileView] = field(default_factory=list)
    lineage: list[LineageView] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}@{self.number}"


@dataclass
class LatestView:
    number: int
    digest: str
    r: int
    base: str | None
    target_modules: Any
    validation_state: str
    created_at: datetime


@dataclass
class AdapterView:
    """What the API shows of an adapter in a search (``AdapterOut``)."""

    id: int
    namespace: str
    name: str
    visibility: str
    description: str
    created_at: datetime
    updated_at: datetime
    created_by: str | None
    versions_count: int
    latest: LatestView | None
    tags: dict[str, int]

    @property
    def public(self) -> bool:
        return self.visibility == Visibility.PUBLIC.value


# --------------------------------------------------------------------------- statements

_V = AdapterVersion
_CREATOR = aliased(User, name="creator")

#: the version columns, in ``VersionView`` order (``id`` .. ``delete_reason``)
_VERSION_COLUMNS = (
    _V.id,
    _V.adapter_id,
    Namespace.name,
    Adapter.name,
    _V.number,
    _V.digest,
    _V.peft_type,
    _V.r,
    _V.lora_alpha,
    _V.use_rslora,
    _V.use_dora,
    _V.rank_pattern,
    _V.alpha_pattern,
    _V.target_modules,
    _V.modules_to_save,
    _V.fan_in_fan_out,
    _V.dtype,
    _V.num_parameters,
    _V.size_bytes,
    _V.adapter_config,
    _V.base_model_name,
    _V.labels,
    _V.description,
    _V.created_at,
    _V.validation_state,
    _V.validation_report,
    _V.compatibility_report,
    _V.deleted_at,
    _V.delete_reason,
)
_N_VERSION_COLUMNS = len(_VERSION_COLUMNS)
_VERSION_FIELDS = [f.name for f in fields(VersionView)][:_N_VERSION_COLUMNS]


class _comma_joined(FunctionElement[str]):
    """``string_agg(x, ',')`` / ``group_concat(x, ',')``: ``func.aggregate_strings`` with
    the separator written into the SQL, not a literal parameter re-rendered on every
    execution (that costs more than the query itself on SQLite)."""

    name = "comma_joined"
    inherit_cache = True
    type = String()


@compiles(_comma_joined)
def _comma_joined_sqlite(element: _comma_joined, compiler: Any, **kw: Any) -> str:
    return f"group_concat({compiler.process(element.clauses, **kw)}, ',')"


@compiles(_comma_joined, "postgresql")
def _comma_joined_postgresql(element: _comma_joined, compiler: Any, **kw: Any) -> str:
    return f"string_agg({compiler.process(element.clauses, **kw)}, ',')"


class _files_of(FunctionElement[Any]):
    """A version's files as one JSON array of ``[path, digest, size]`` in path order (a
    correlated subquery on the version id given): a version and its files in one query."""

    name = "files_of"
    inherit_cache = True
    type = JSON()


@compiles(_files_of)
def _files_of_sqlite(element: _files_of, compiler: Any, **kw: Any) -> str:
    version_id = compiler.process(element.clauses, **kw)
    return (
        "(SELECT json_group_array(json_array(f.path, f.blob_digest, f.size)) FROM "
        "(SELECT path, blob_digest, size FROM version_files "
        f"WHERE version_files.version_id = {version_id} ORDER BY path) AS f)"
    )


@compiles(_files_of, "postgresql")
def _files_of_postgresql(element: _files_of, compiler: Any, **kw: Any) -> str:
    version_id = compiler.process(element.clauses, **kw)
    return (
        "(SELECT json_agg(json_build_array(f.path, f.blob_digest, f.size) "
        "ORDER BY f.path) FROM version_files AS f "
        f"WHERE f.version_id = {version_id})"
    )


class _tags_of(FunctionElement[Any]):
    """An adapter's tags as one JSON array of ``[tag, version number]`` (a correlated
    subquery on the adapter id given)."""

    name = "tags_of"
    inherit_cache = True
    type = JSON()


@compiles(_tags_of)
def _tags_of_sqlite(element: _tags_of, compiler: Any, **kw: Any) -> str:
    adapter_id = compiler.process(element.clauses, **kw)
    return (
        "(SELECT json_group_array(json_array(t.name, tv.number)) FROM tags AS t "
        f"JOIN adapter_versions AS tv ON tv.id = t.version_id WHERE t.adapter_id = "
        f"{adapter_id})"
    )


@compiles(_tags_of, "postgresql")
def _tags_of_postgresql(element: _tags_of, compiler: Any, **kw: Any) -> str:
    adapter_id = compiler.process(element.clauses, **kw)
    return (
        "(SELECT json_agg(json_build_array(t.name, tv.number)) FROM tags AS t "
        f"JOIN adapter_versions AS tv ON tv.id = t.version_id WHERE t.adapter_id = "
        f"{adapter_id})"
    )


def _version_select() -> Select[Any]:
    """Versions with everything ``VersionView`` shows and what authorisation needs; the
    caller's user id is the ``uid`` parameter (-1 for anonymous callers)."""
    tags = (
        select(_comma_joined(Tag.name))
        .where(Tag.version_id == _V.id)
        .correlate(_V)
        .scalar_subquery()
    )
    has_lineage = exists().where(Lineage.child_version_id == _V.id).correlate(_V)
    role = (
        select(Membership.role)
        .where(
            Membership.namespace_id == Adapter.namespace_id, Membership.user_id == bindparam("uid")
        )
        .correlate(Adapter)
        .scalar_subquery()
    )
    return (
        select(
            *_VERSION_COLUMNS,
            BaseModelRecord.name,
            BaseModelRecord.fingerprint,
            _CREATOR.name,
            tags,
            _files_of(_V.id),
            has_lineage,
            Adapter.visibility,
            Adapter.namespace_id,
            Namespace.kind,
            role,
        )
        .select_from(_V)
        .join(Adapter, Adapter.id == _V.adapter_id)
        .join(Namespace, Namespace.id == Adapter.namespace_id)
        .outerjoin(BaseModelRecord, BaseModelRecord.id == _V.base_model_id)
        .outerjoin(_CREATOR, _CREATOR.id == _V.created_by)
    )


def _by_name() -> Select[Any]:
    return _version_select().where(
        Namespace.name == bindparam("ns"), Adapter.name == bindparam("name")
    )


def _live() -> Any:
    return _V.deleted_at.is_(None)


def _tagged() -> Any:
    return _V.id == (
        select(Tag.version_id)
        .where(Tag.adapter_id == Adapter.id, Tag.name == bindparam("tag"))
        .correlate(Adapter)
        .scalar_subquery()
    )


def _newest_live() -> Any:
    newest = aliased(AdapterVersion, name="newest")
    return _V.number == (
        select(func.max(newest.number))
        .where(newest.adapter_id == Adapter.id, newest.deleted_at.is_(None))
        .correlate(Adapter)
        .scalar_subquery()
    )


#: one statement per way of naming a version, built once (compiled once per dialect)
_STATEMENTS: dict[str, Select[Any]] = {
    "number": _by_name().where(_V.number == bindparam("number"), _live()),
    "number+deleted": _by_name().where(_V.number == bindparam("number")),
    "digest": _by_name().where(_V.digest == bindparam("digest"), _live()),
    "digest+deleted": _by_name().where(_V.digest == bindparam("digest")),
    "tag": _by_name().where(_tagged(), _live()),
    "newest": _by_name().where(_newest_live(), _live()),
    "ids": _version_select().where(_V.id.in_(bindparam("ids", expanding=True))).order_by(_V.id),
    "page": _by_name()
    .where(_live(), _V.number < bindparam("before"))
    .order_by(_V.number.desc())
    .limit(bindparam("limit")),
    "page+deleted": _by_name()
    .where(_V.number < bindparam("before"))
    .order_by(_V.number.desc())
    .limit(bindparam("limit")),
}

_PARENT_VERSION = aliased(AdapterVersion, name="parent")
_PARENT_ADAPTER = aliased(Adapter, name="parent_adapter")
_PARENT_NAMESPACE = aliased(Namespace, name="parent_namespace")
_LINEAGE = (
    select(
        Lineage.child_version_id,
        Lineage.weight,
        Lineage.method,
        Lineage.params,
        _PARENT_NAMESPACE.name,
        _PARENT_ADAPTER.name,
        _PARENT_VERSION.number,
    )
    .join(_PARENT_VERSION, _PARENT_VERSION.id == Lineage.parent_version_id)
    .join(_PARENT_ADAPTER, _PARENT_ADAPTER.id == _PARENT_VERSION.adapter_id)
    .join(_PARENT_NAMESPACE, _PARENT_NAMESPACE.id == _PARENT_ADAPTER.namespace_id)
    .where(Lineage.child_version_id.in_(bindparam("ids", expanding=True)))
    .order_by(Lineage.child_version_id, Lineage.position)
)

#: far above any version number (they are < 10**9), for the first page
_NO_UPPER_BOUND = 2**31 - 1


def _uid(actor: Actor) -> int:
    return actor.user_id if actor is not None else -1


#: Reads run on a session (the framework's routes) or a bare connection (the API's fast
#: path, ``loreg.api.fastpath``, which skips the session's bookkeeping).
Db = Session | Connection


def connection_of(db: Db) -> Connection:
    return db if isinstance(db, Connection) else db.connection()


def session_of(db: Db) -> Session:
    """An ORM session on ``db`` (for the rare paths that need ORM objects: misses)."""
    return db if isinstance(db, Session) else Session(bind=db)


# --------------------------------------------------------------------------- loading


@dataclass
class _Row:
    view: VersionView
    has_lineage: bool
    visibility: str
    namespace_id: int
    namespace_kind: str
    role: str | None


def _rows(session: Db, statement: str, params: dict[str, Any]) -> list[_Row]:
    out = []
    for row in connection_of(session).execute(_STATEMENTS[statement], params):
        n = _N_VERSION_COLUMNS
        (
            base_name,
            base_fp,
            creator,
            tags,
            files,
            has_lineage,
            visibility,
            ns_id,
            ns_kind,
            role,
        ) = row[n:]
        view = VersionView(
            **dict(zip(_VERSION_FIELDS, row[:n], strict=True)),
            base_name=base_name,
            base_fingerprint=base_fp,
            created_by=creator,
            tags=sorted(tags.split(",")) if tags else [],
            files=[FileView(*f) for f in files or ()],
        )
        view.rank_pattern = view.rank_pattern or {}
        view.alpha_pattern = view.alpha_pattern or {}
        view.adapter_config = view.adapter_config or {}
        view.labels = view.labels or {}
        out.append(_Row(view, bool(has_lineage), visibility, ns_id, ns_kind, role))
    return out


def _complete(session: Db, rows: Sequence[_Row]) -> list[VersionView]:
    """Attach lineage (one more query, only if any of the versions has some)."""
    views = [r.view for r in rows]
    with_lineage = [r.view.id for r in rows if r.has_lineage]
    if with_lineage:
        by_id = {v.id: v for v in views}
        for child, weight, method, params, ns, name, number in connection_of(session).execute(
            _LINEAGE, {"ids": with_lineage}
        ):
            by_id[child].lineage.append(
                LineageView(f"{ns}/{name}@{number}", weight, method, params or {})
            )
    return views


def _readable(actor: Actor, row: _Row) -> bool:
    return can_read_row(actor, row.visibility, row.namespace_id, row.namespace_kind, row.role)


def version_views(session: Db, ids: Sequence[int]) -> list[VersionView]:
    """Versions by id, in the order given (no authorisation: the caller has it already)."""
    if not ids:
        return []
    rows = {r.view.id: r for r in _rows(session, "ids", {"ids": list(ids), "uid": -1})}
    found = [rows[i] for i in ids if i in rows]
    _complete(session, found)
    return [r.view for r in found]


def _missing(session: Db, actor: Actor, namespace: str, name: str, ref: str) -> NotFound:
    """Why nothing matched: the adapter is missing or hidden (one answer for both), or it
    has no such version."""
    from loreg.services.adapters import get_adapter  # the ORM path, only on a miss

    adapter = get_adapter(session_of(session), actor, namespace, name)
    full = f"{adapter.namespace.name}/{adapter.name}"
    return NotFound(
        f"no version of '{full}' matches '{ref}'", details={"adapter": full, "ref": ref}
    )


def _find(
    session: Db,
    actor: Actor,
    namespace: str,
    name: str,
    kind: str,
    value: str,
    ref: str,
    *,
    include_deleted: bool = False,
) -> VersionView:
    parsed = parse_adapter_name(namespace, name)
    params: dict[str, Any] = {"ns": parsed.namespace, "name": parsed.name, "uid": _uid(actor)}
    suffix = "+deleted" if include_deleted else ""
    if kind == "number":
        rows = _rows(session, "number" + suffix, {**params, "number": int(value)})
    elif kind == "digest":
        rows = _rows(session, "digest" + suffix, {**params, "digest": value})
    else:
        rows = _rows(session, "tag", {**params, "tag": value})
        if not rows and value == DEFAULT_TAG:
            rows = _rows(session, "newest", params)
    if not rows:
        raise _missing(session, actor, parsed.namespace, parsed.name, ref)
    if not _readable(actor, rows[0]):
        raise adapter_not_found(parsed.namespace, parsed.name)
    return _complete(session, rows[:1])[0]


def show_version(
    session: Db,
    actor: Actor,
    namespace: str,
    name: str,
    selector: str,
    *,
    include_deleted: bool = False,
) -> VersionView:
    """A version by number or ``sha256:`` digest (the ``{ref}`` of the versions routes)."""
    kind, value = parse_version_selector(selector)
    return _find(
        session, actor, namespace, name, kind, value, selector, include_deleted=include_deleted
    )


def resolve(session: Db, actor: Actor, ref: str) -> VersionView:
    """Any reference form of docs/design.md §3 -> a live version the actor may read."""
    parsed = parse_ref(ref)
    return _find(session, actor, parsed.namespace, parsed.name, parsed.kind, parsed.value, ref)


def list_versions(
    session: Db,
    actor: Actor,
    namespace: str,
    name: str,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
    include_deleted: bool = False,
) -> Page[VersionView]:
    """An adapter's versions, newest first, a page at a time."""
    check_limit(limit)
    parsed = parse_adapter_name(namespace, name)
    after = cursor_int(decode_cursor("versions", cursor), "n")
    rows = _rows(
        session,
        "page+deleted" if include_deleted else "page",
        {
            "ns": parsed.namespace,
            "name": parsed.name,
            "uid": _uid(actor),
            "before": after if after is not None else _NO_UPPER_BOUND,
            "limit": limit + 1,
        },
    )
    if not rows:
        from loreg.services.adapters import get_adapter

        get_adapter(session_of(session), actor, parsed.namespace, parsed.name)  # 404 if hidden
        return Page([], None)
    if not _readable(actor, rows[0]):
        raise adapter_not_found(parsed.namespace, parsed.name)
    page = page_of(rows, limit, "versions", lambda r: {"n": r.view.number})
    return Page(_complete(session, page.items), page.next_cursor)


# --------------------------------------------------------------------------- adapters

_LATEST_NEWEST = aliased(AdapterVersion, name="newest")
_COUNTED = aliased(AdapterVersion, name="counted")
_LATEST_VERSION = aliased(AdapterVersion, name="latest")
_LATEST_BASE = aliased(BaseModelRecord, name="latest_base")


def _adapter_page_columns(adapter: Any) -> Select[*tuple[Any, ...]]:
    latest = _LATEST_VERSION
    newest = (
        select(func.max(_LATEST_NEWEST.number))
        .where(_LATEST_NEWEST.adapter_id == adapter.id, _LATEST_NEWEST.deleted_at.is_(None))
        .correlate(adapter)
        .scalar_subquery()
    )
    count = (
        select(func.count())
        .select_from(_COUNTED)
        .where(_COUNTED.adapter_id == adapter.id, _COUNTED.deleted_at.is_(None))
        .correlate(adapter)
        .scalar_subquery()
    )
    return (
        select(
            adapter.id,
            Namespace.name,
            adapter.name,
            adapter.visibility,
            adapter.description,
            adapter.created_at,
            adapter.updated_at,
            _CREATOR.name,
            latest.number,
            latest.digest,
            latest.r,
            _LATEST_BASE.name,
            latest.target_modules,
            latest.validation_state,
            latest.created_at,
            count,
            _tags_of(adapter.id),
        )
        .select_from(adapter)
        .join(Namespace, Namespace.id == adapter.namespace_id)
        .outerjoin(_CREATOR, _CREATOR.id == adapter.created_by)
        .outerjoin(
            latest,
            and_(
                latest.adapter_id == adapter.id,
                latest.number == newest,
                latest.deleted_at.is_(None),
            ),
        )
        .outerjoin(_LATEST_BASE, _LATEST_BASE.id == latest.base_model_id)
    )


def adapter_page_columns(adapter: Any) -> Select[*tuple[Any, ...]]:
    """A search page's columns from ``adapter`` (the table or an alias of a subquery of
    it): the adapter, its latest live version, live version count and tags, in one row;
    ``loreg.services.adapters.search_rows`` adds the filters."""
    if adapter is Adapter:
        return _ADAPTER_PAGE
    return _adapter_page_columns(adapter)


_ADAPTER_PAGE = _adapter_page_columns(Adapter)


def _adapter_views(rows: Sequence[Any]) -> list[AdapterView]:
    out = []
    for (
        aid,
        ns,
        name,
        visibility,
        description,
        created_at,
        updated_at,
        creator,
        number,
        digest,
        r,
        base,
        targets,
        state,
        created,
        count,
        tagged,
    ) in rows:
        latest = (
            LatestView(number, digest, r, base, targets, state, created)
            if number is not None
            else None
        )
        out.append(
            AdapterView(
                aid,
                ns,
                name,
                visibility,
                description or "",
                created_at,
                updated_at,
                creator,
                versions_count=count or 0,
                latest=latest,
                tags=dict(sorted((tag, n) for tag, n in tagged or ())),
            )
        )
    return out


def adapter_page(rows: Sequence[Any], limit: int) -> Page[AdapterView]:
    """A page of ``AdapterView`` from ``limit + 1`` rows of ``adapter_page_columns``."""
    paged = page_of(list(rows), limit, "adapters", lambda r: {"id": r[0]})
    return Page(_adapter_views(paged.items), paged.next_cursor)


__all__ = [
    "AdapterView",
    "Db",
    "FileView",
    "LatestView",
    "LineageView",
    "VersionView",
    "adapter_page",
    "adapter_page_columns",
    "connection_of",
    "list_versions",
    "resolve",
    "session_of",
    "show_version",
    "version_views",
]
