"""The registry seen as a Hugging Face Hub (docs/huggingface.md): repos, revisions, commits.

A repo ``ns/name`` is the adapter of that name. Its commits are the adapter's versions, and a
commit id is the first 40 hex digits of the version's digest (the sha256 of its manifest), so
it is stable, unique within the adapter and names content, not a moment. The branch ``main``
is the ``latest`` tag; the other tags are tags. ``revision`` may be ``main``, a commit id, a
tag, a version number or a full ``sha256:`` digest.

A commit (``POST .../commit/main``) applies its added and deleted files to the files of
``main`` and pushes the result with ``adapters.push_version``, the one path every version
takes: the same checks as ``loreg push``, and identical content makes no new version.

Merged checkpoints: ``_merges/JOB_ID`` is the output of a succeeded job (a merge's full
weights), readable by whoever may see the job. A leading ``_`` is not a valid loreg name, so
this namespace can never hold an adapter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from loreg.db.models import Adapter, AdapterVersion, Job, Tag, Visibility
from loreg.digests import validate_digest
from loreg.errors import Conflict, InvalidInput, LoregError, NotFound
from loreg.formats.peft_config import CONFIG_NAME, MAX_CONFIG_BYTES
from loreg.refs import (
    DEFAULT_TAG,
    FileEntry,
    manifest_digest,
    parse_adapter_name,
    validate_base_name,
)
from loreg.services import adapters, bases, blobs, jobs
from loreg.services.accounts import get_namespace
from loreg.services.manifests import validate_path
from loreg.services.permissions import (
    Actor,
    require_scope,
    require_write_adapter,
    require_write_namespace,
)
from loreg.storage import BlobStore

MAIN = "main"
MERGES_NAMESPACE = "_merges"
README = "README.md"
#: The largest README whose front matter (card data) is read.
MAX_CARD_BYTES = 1024 * 1024
#: The largest file a commit may carry inline (base64 in the NDJSON body).
MAX_INLINE_BYTES = 10 * 1024 * 1024
MAX_COMMIT_LINES = 2000
_EMPTY_COMMIT = manifest_digest([])[7:47]
_HEX = set("0123456789abcdef")


class RepoNotFound(NotFound):
    """No such repo, or one the caller may not read (the same answer, on purpose)."""

    code = "repo_not_found"


class RevisionNotFound(NotFound):
    code = "revision_not_found"


class EntryNotFound(NotFound):
    code = "entry_not_found"

    def __init__(self, message: str, *, commit: str, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.commit = commit


def repo_not_found(repo_id: str) -> RepoNotFound:
    return RepoNotFound("Repository not found", details={"repo_id": repo_id})


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class HubFile:
    """A file of a snapshot, with the identifiers the Hub protocol speaks of."""

    path: str
    digest: str
    size: int

    @property
    def sha256(self) -> str:
        return self.digest.removeprefix("sha256:")

    @property
    def pointer(self) -> bytes:
        """The git-lfs pointer file a Hub repo keeps in git for this file."""
        return (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
            f"size {self.size}\n"
        ).encode()

    @property
    def blob_id(self) -> str:
        """The git blob id of the pointer (what the Hub calls a file's ``oid``)."""
        return git_blob_id(self.pointer)


def git_blob_id(content: bytes) -> str:
    """git's object id of a blob: sha1 over ``blob <size>\\0`` and the content."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


def commit_id(digest: str) -> str:
    """The 40-hex commit id of a version (or any manifest) digest."""
    return validate_digest(digest)[7:47]


def _is_commit_id(value: str) -> bool:
    return len(value) == 40 and set(value) <= _HEX


# --------------------------------------------------------------------------- snapshots


@dataclass
class Snapshot:
    """One revision of a repo: what the read routes answer from."""

    repo_id: str
    commit: str
    files: list[HubFile]
    private: bool
    created_at: datetime
    last_modified: datetime
    adapter: Adapter | None = None
    version: AdapterVersion | None = None
    job: Job | None = None
    tags: list[str] = field(default_factory=list)

    def file(self, path: str) -> HubFile:
        for f in self.files:
            if f.path == path:
                return f
        raise EntryNotFound(
            f"Entry not found: {path[:200]}", commit=self.commit, details={"path": path[:200]}
        )


def _hub_files(entries: Iterable[Any]) -> list[HubFile]:
    return sorted((HubFile(e.path, e.blob_digest, e.size) for e in entries), key=lambda f: f.path)


def get_repo(session: Session, actor: Actor, namespace: str, name: str) -> Adapter:
    """The adapter behind repo ``namespace/name`` if the actor may read it."""
    repo_id = f"{namespace}/{name}"
    try:
        return adapters.get_adapter(session, actor, namespace, name)
    except NotFound:
        raise repo_not_found(repo_id) from None


def _version_for(session: Session, adapter: Adapter, revision: str) -> AdapterVersion | None:
    """The live version ``revision`` names; ``None`` for ``main`` of an empty repo."""
    live = [AdapterVersion.adapter_id == adapter.id, AdapterVersion.deleted_at.is_(None)]
    if revision in (MAIN, "refs/heads/main"):
        tag = session.scalar(
            select(Tag).where(Tag.adapter_id == adapter.id, Tag.name == DEFAULT_TAG)
        )
        if tag is not None:
            return session.get(AdapterVersion, tag.version_id)
        return session.scalar(
            select(AdapterVersion).where(*live).order_by(AdapterVersion.number.desc()).limit(1)
        )
    if _is_commit_id(revision):
        return session.scalar(
            select(AdapterVersion).where(
                *live, AdapterVersion.digest.startswith(f"sha256:{revision}")
            )
        )
    if revision.startswith("sha256:"):
        return session.scalar(
            select(AdapterVersion).where(*live, AdapterVersion.digest == revision)
        )
    tag_name = revision.removeprefix("refs/tags/")
    tag = session.scalar(select(Tag).where(Tag.adapter_id == adapter.id, Tag.name == tag_name))
    if tag is not None:
        return session.get(AdapterVersion, tag.version_id)
    if revision.isascii() and revision.isdigit() and len(revision) <= 9:
        return session.scalar(
            select(AdapterVersion).where(*live, AdapterVersion.number == int(revision))
        )
    raise RevisionNotFound(
        f"Invalid rev id: {revision[:100]}", details={"revision": revision[:100]}
    )


def snapshot(
    session: Session, actor: Actor, namespace: str, name: str, revision: str = MAIN
) -> Snapshot:
    """The files of ``namespace/name`` at ``revision`` (a repo the actor may read)."""
    if namespace == MERGES_NAMESPACE:
        return _job_snapshot(session, actor, name, revision)
    adapter = get_repo(session, actor, namespace, name)
    version = _version_for(session, adapter, revision)
    repo_id = f"{adapter.namespace.name}/{adapter.name}"
    private = adapter.visibility != Visibility.PUBLIC.value
    if version is None:
        if revision in (MAIN, "refs/heads/main", _EMPTY_COMMIT):
            return Snapshot(
                repo_id,
                _EMPTY_COMMIT,
                [],
                private,
                adapter.created_at,
                adapter.updated_at,
                adapter=adapter,
            )
        raise RevisionNotFound(
            f"Invalid rev id: {revision[:100]}", details={"revision": revision[:100]}
        )
    return Snapshot(
        repo_id,
        commit_id(version.digest),
        _hub_files(version.files),
        private,
        adapter.created_at,
        version.created_at,
        adapter=adapter,
        version=version,
        tags=adapters.tags_of(session, version),
    )


def _job_snapshot(session: Session, actor: Actor, job_id: str, revision: str) -> Snapshot:
    repo_id = f"{MERGES_NAMESPACE}/{job_id}"
    try:
        job, artifacts = jobs.outputs(session, actor, job_id)
    except LoregError:  # unknown, hidden, unfinished, expired, anonymous: all "not found"
        raise repo_not_found(repo_id) from None
    if not artifacts:
        raise repo_not_found(repo_id)
    files = _hub_files(artifacts)
    commit = manifest_digest(FileEntry(f.path, f.digest, f.size) for f in files)[7:47]
    if revision not in (MAIN, "refs/heads/main", commit):
        raise RevisionNotFound(
            f"Invalid rev id: {revision[:100]}", details={"revision": revision[:100]}
        )
    finished = job.finished_at or job.updated_at
    return Snapshot(repo_id, commit, files, True, job.created_at, finished, job=job)


# --------------------------------------------------------------------------- card data


def front_matter(text: str) -> dict[str, Any] | None:
    """The YAML front matter of a model card; ``None`` when there is none.

    Raises ``InvalidInput`` when there is one and it is not a YAML mapping.
    """
    if not text.startswith("---"):
        return None
    lines = text.splitlines()
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
    except StopIteration:
        return None
    try:
        data = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the model card's metadata is not valid YAML: {exc}"[:500]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInput("the model card's metadata must be a YAML mapping (key: value)")
    return data


def card_data(store: BlobStore, snap: Snapshot) -> dict[str, Any]:
    """The README's front matter (when it parses), with ``base_model`` set to the registered
    base the version was checked against."""
    data: dict[str, Any] = {}
    readme = next((f for f in snap.files if f.path == README), None)
    if readme is not None and readme.size <= MAX_CARD_BYTES:
        try:
            data = (
                front_matter(
                    store.read_range(readme.digest, 0, readme.size).decode("utf-8", "replace")
                )
                or {}
            )
        except InvalidInput:
            data = {}
    if snap.version is not None:
        if snap.version.base_model is not None:  # what loreg checked, over what the card says
            data["base_model"] = snap.version.base_model.name
        data.setdefault("library_name", "peft")
    return json.loads(json.dumps(data, default=str))  # YAML dates and the like become text


def _card_base(text: str) -> str | None:
    try:
        data = front_matter(text) or {}
    except InvalidInput:
        return None
    value = data.get("base_model")
    if isinstance(value, list) and value:
        value = value[0]
    return value if isinstance(value, str) else None


# --------------------------------------------------------------------------- refs, commits


@dataclass(frozen=True)
class Ref:
    name: str
    ref: str
    commit: str


def refs(session: Session, actor: Actor, namespace: str, name: str) -> tuple[Ref, list[Ref]]:
    """The branch ``main`` and the tags (every loreg tag but ``latest``, which is ``main``)."""
    head = snapshot(session, actor, namespace, name)
    main = Ref(MAIN, "refs/heads/main", head.commit)
    if head.adapter is None:
        return main, []
    rows = session.execute(
        select(Tag.name, AdapterVersion.digest)
        .join(AdapterVersion, AdapterVersion.id == Tag.version_id)
        .where(Tag.adapter_id == head.adapter.id, Tag.name != DEFAULT_TAG)
        .order_by(Tag.name)
    )
    return main, [Ref(t, f"refs/tags/{t}", commit_id(d)) for t, d in rows]


@dataclass(frozen=True)
class CommitEntry:
    commit: str
    title: str
    message: str
    author: str | None
    date: datetime


def commits(
    session: Session, actor: Actor, namespace: str, name: str, revision: str = MAIN
) -> list[CommitEntry]:
    """The versions up to ``revision``, newest first (a repo's history)."""
    snap = snapshot(session, actor, namespace, name, revision)
    if snap.version is None or snap.adapter is None:
        return [CommitEntry(snap.commit, "initial commit", "", None, snap.created_at)]
    rows = session.scalars(
        select(AdapterVersion)
        .where(
            AdapterVersion.adapter_id == snap.adapter.id,
            AdapterVersion.deleted_at.is_(None),
            AdapterVersion.number <= snap.version.number,
        )
        .order_by(AdapterVersion.number.desc())
        .limit(1000)
    ).all()
    names = adapters.user_names(session, [v.created_by for v in rows])
    out = []
    for v in rows:
        title, _, body = (v.description or f"version {v.number}").partition("\n")
        out.append(
            CommitEntry(
                commit_id(v.digest),
                title.strip() or f"version {v.number}",
                body.strip(),
                names.get(v.created_by or -1),
                v.created_at,
            )
        )
    return out


# --------------------------------------------------------------------------- writes


def create_repo(
    session: Session, actor: Actor, namespace: str, name: str, *, private: bool | None
) -> tuple[Adapter, bool]:
    """``create_repo``: an empty adapter (private unless asked otherwise), or the existing
    one (``created`` False: the Hub answers 409)."""
    return adapters.create_adapter(
        session, actor, namespace, name, public=None if private is None else not private
    )


def require_commit_access(session: Session, actor: Actor, namespace: str, name: str) -> None:
    """Whoever may push a version to ``namespace/name`` (write scope and role)."""
    if namespace == MERGES_NAMESPACE:
        raise repo_not_found(f"{namespace}/{name}")
    parsed = parse_adapter_name(namespace, name)
    principal = require_scope(actor, "write")
    adapter = adapters.find_adapter(session, parsed.namespace, parsed.name)
    if adapter is not None:
        try:
            require_write_adapter(session, principal, adapter)
        except NotFound:
            raise repo_not_found(str(parsed)) from None
    else:
        require_write_namespace(session, principal, get_namespace(session, parsed.namespace))


def head_files(session: Session, actor: Actor, namespace: str, name: str) -> dict[str, HubFile]:
    """The files of ``main`` by path (empty for a repo that does not exist yet)."""
    if adapters.find_adapter(session, namespace, name) is None:
        return {}
    return {f.path: f for f in snapshot(session, actor, namespace, name).files}


def missing_objects(
    session: Session, actor: Actor, namespace: str, name: str, objects: Sequence[tuple[str, int]]
) -> list[str]:
    """LFS batch: which of the ``(sha256 hex, size)`` objects must be uploaded. The same
    answer as ``POST /api/v1/uploads`` gives for these digests."""
    require_commit_access(session, actor, namespace, name)
    return blobs.missing(session, actor, [f"sha256:{oid}" for oid, _ in objects])


@dataclass
class CommitRequest:
    """A parsed NDJSON commit: its message and operations."""

    summary: str = ""
    description: str = ""
    parent_commit: str | None = None
    added: dict[str, FileEntry] = field(default_factory=dict)
    inline: dict[str, bytes] = field(default_factory=dict)  # digest -> content
    deleted_files: list[str] = field(default_factory=list)
    deleted_folders: list[str] = field(default_factory=list)


def _line_value(item: Any, n: int) -> tuple[str, dict[str, Any]]:
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("key"), str)
        or not isinstance(item.get("value"), dict)
    ):
        raise InvalidInput(f'commit line {n}: expected {{"key": ..., "value": {{...}}}}')
    return item["key"], item["value"]


def _path_of(value: dict[str, Any], n: int, *, folder: bool = False) -> str:
    path = value.get("path")
    if not isinstance(path, str):
        raise InvalidInput(f"commit line {n}: 'path' must be a string")
    return validate_path(path.rstrip("/") if folder else path)


def parse_commit(body: bytes) -> CommitRequest:
    """Parse the NDJSON body of ``POST /api/models/{repo}/commit/{revision}``."""
    req = CommitRequest()
    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        raise InvalidInput("the commit is empty: send a header line and file operations")
    if len(lines) > MAX_COMMIT_LINES:
        raise InvalidInput(f"at most {MAX_COMMIT_LINES} operations per commit")
    for n, raw in enumerate(lines, 1):
        try:
            item = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InvalidInput(f"commit line {n} is not JSON") from None
        key, value = _line_value(item, n)
        if key == "header":
            summary, description = value.get("summary", ""), value.get("description", "")
            parent = value.get("parentCommit")
            if not isinstance(summary, str) or not isinstance(description, str):
                raise InvalidInput("commit header: summary and description must be strings")
            if parent is not None and (
                not isinstance(parent, str) or not 7 <= len(parent) <= 40 or not set(parent) <= _HEX
            ):
                raise InvalidInput("commit header: parentCommit must be a commit id")
            req.summary, req.description, req.parent_commit = summary, description, parent
        elif key == "file":
            path = _path_of(value, n)
            if value.get("encoding", "base64") != "base64" or not isinstance(
                value.get("content"), str
            ):
                raise InvalidInput(f"commit line {n}: file content must be base64 text")
            try:
                content = base64.b64decode(value["content"], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput(f"commit line {n}: file content is not valid base64") from None
            if len(content) > MAX_INLINE_BYTES:
                raise InvalidInput(
                    f"{path}: inline files are at most {MAX_INLINE_BYTES} bytes; "
                    "upload larger files through LFS"
                )
            digest = "sha256:" + hashlib.sha256(content).hexdigest()
            req.inline[digest] = content
            req.added[path] = FileEntry(path, digest, len(content))
        elif key == "lfsFile":
            path = _path_of(value, n)
            oid, size = value.get("oid"), value.get("size")
            if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str):
                raise InvalidInput(f"commit line {n}: lfsFile needs a sha256 oid")
            digest = validate_digest(f"sha256:{oid}")
            if size is not None and (
                isinstance(size, bool) or not isinstance(size, int) or size < 0
            ):
                raise InvalidInput(f"commit line {n}: size must be an integer >= 0")
            req.added[path] = FileEntry(path, digest, -1 if size is None else size)
        elif key == "deletedFile":
            req.deleted_files.append(_path_of(value, n))
        elif key == "deletedFolder":
            req.deleted_folders.append(_path_of(value, n, folder=True))
        else:
            raise InvalidInput(
                f"commit line {n}: unsupported operation {key[:40]!r} "
                "(header, file, lfsFile, deletedFile, deletedFolder)"
            )
    return req


def store_inline(store: BlobStore, req: CommitRequest) -> None:
    """Put the commit's inline files into the store (verified; no DB work, so the route can
    run it before its transaction), as ``PUT /api/v1/blobs`` would."""
    for digest, content in req.inline.items():
        blobs.store_blob(store, digest, io.BytesIO(content), max_size=len(content))


def _new_files(
    head: dict[str, HubFile], req: CommitRequest, sizes: dict[str, int]
) -> list[FileEntry]:
    files = {p: FileEntry(p, f.digest, f.size) for p, f in head.items()}
    for path in req.deleted_files:
        if path not in files:
            raise EntryNotFound(
                f"A file with this name doesn't exist: {path[:200]}",
                commit="",
                details={"path": path[:200]},
            )
        del files[path]
    for folder in req.deleted_folders:
        prefix = folder.rstrip("/") + "/"
        for path in [p for p in files if p.startswith(prefix)]:
            del files[path]
    for path, entry in req.added.items():
        size = entry.size if entry.size >= 0 else sizes.get(entry.digest, 0)
        files[path] = FileEntry(path, entry.digest, size)
    return list(files.values())


def _base_from_card(
    session: Session, store: BlobStore, files: Sequence[FileEntry], req: CommitRequest
) -> str | None:
    """The card's ``base_model`` when the adapter config names no registered base and the
    card names one (docs/huggingface.md: how the base is found)."""
    by_path = {f.path: f for f in files}
    readme, config = by_path.get(README), by_path.get(CONFIG_NAME)
    if (
        readme is None
        or config is None
        or readme.size > MAX_CARD_BYTES
        or config.size > MAX_CONFIG_BYTES
    ):
        return None

    def read(entry: FileEntry) -> bytes:
        inline = req.inline.get(entry.digest)
        return inline if inline is not None else store.read_range(entry.digest, 0, entry.size)

    try:
        stated = json.loads(read(config)).get("base_model_name_or_path")
    except (ValueError, AttributeError, LoregError):
        return None  # the push names the problem with the config itself
    if isinstance(stated, str) and _registered(session, stated):
        return None
    try:
        candidate = _card_base(read(readme).decode("utf-8", "replace"))
    except LoregError:
        return None
    return candidate if candidate is not None and _registered(session, candidate) else None


def _registered(session: Session, name: str) -> bool:
    try:
        validate_base_name(name)
    except InvalidInput:
        return False
    return bases.find_base(session, name) is not None


def commit(
    session: Session,
    store: BlobStore,
    actor: Actor,
    namespace: str,
    name: str,
    revision: str,
    req: CommitRequest,
    *,
    max_version_bytes: int | None = None,
) -> adapters.PushOutcome:
    """Apply a commit to ``main`` and push the result as a version (the caller commits)."""
    if revision not in (MAIN, "refs/heads/main"):
        raise InvalidInput(
            f"commits go to 'main' (got {revision[:100]!r}); loreg tags versions instead of "
            "branching: commit to main, then `loreg tag NS/NAME@N TAG`",
            details={"revision": revision[:100]},
        )
    require_commit_access(session, actor, namespace, name)
    head = head_files(session, actor, namespace, name)
    if req.parent_commit is not None:
        current = snapshot(session, actor, namespace, name).commit if head else _EMPTY_COMMIT
        if not current.startswith(req.parent_commit):
            raise Conflict(
                "A commit has happened since the parent commit; pull and retry",
                details={"parent_commit": req.parent_commit, "head": current},
            )
    for digest, content in req.inline.items():
        blobs.record_blob(session, actor, digest, len(content))
    sizes = blobs.blob_sizes(session, [e.digest for e in req.added.values() if e.size < 0])
    files = _new_files(head, req, sizes)
    if not files:
        raise InvalidInput(
            "the commit leaves the repository empty; a version needs the adapter's files"
        )
    message = req.summary.strip()
    if req.description.strip():
        message += "\n\n" + req.description.strip()
    # main is what the commit made, even when that content is an older version's
    spec = adapters.PushSpec(
        files=files,
        base=_base_from_card(session, store, files, req),
        tags=[DEFAULT_TAG],
        description=message[: adapters.MAX_DESCRIPTION] or None,
    )
    try:
        return adapters.push_version(
            session, store, actor, namespace, name, spec, max_version_bytes=max_version_bytes
        )
    except adapters.ConcurrentPush:
        raise Conflict("the repository is being changed concurrently; try again") from None
