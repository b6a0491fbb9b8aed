"""Jobs, user side: submit, inspect, list and cancel them; list a finished job's outputs.

The queue itself (claim, lease, finish) is ``loreg.services.job_queue``; the parameters of
each job type are ``loreg.services.job_params``.

Permissions: a job reads only what its submitter can read (every input is resolved with the
submitter's rights at submit time), and ``combine`` needs write on its target. A job is visible
to its submitter, to site admins, and to anyone who can read all of its inputs (its outputs
are derived from nothing else); that is what lets deduplication hand one user's finished merge
to another user who asks for the very same merge.

Nothing here commits: the API route ends the transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, false, func, or_, select, text, update
from sqlalchemy.orm import Session

from loreg.db.models import (
    Adapter,
    AdapterVersion,
    BaseModelFile,
    BaseModelRecord,
    Job,
    JobArtifact,
    JobStatus,
    JobType,
    Namespace,
    User,
)
from loreg.db.session import is_postgres
from loreg.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from loreg.merge.options import OPTION_NAMES
from loreg.refs import validate_base_name, validate_name
from loreg.services import adapters, audit
from loreg.services.job_params import (
    CombineParams,
    ExportParams,
    JobParams,
    MergeParams,
    ValidateParams,
    parse_params,
)
from loreg.services.job_queue import rows_matched
from loreg.services.pagination import Page, cursor_str, decode_cursor, page_of
from loreg.services.permissions import (
    Actor,
    Level,
    Principal,
    can_read_adapter,
    is_site_admin,
    require_read_adapter,
    require_scope,
    require_user,
    require_write_namespace,
)
from loreg.services.text import storable

#: Statuses that end a job.
TERMINAL = frozenset({JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value})
#: An identical job in one of these is returned instead of queueing a second one.
DEDUPE_STATUSES = (JobStatus.QUEUED.value, JobStatus.RUNNING.value, JobStatus.SUCCEEDED.value)
MAX_LIST = 500


def _now() -> datetime:
    return datetime.now(UTC)


class JobNotFound(NotFound):
    code = "job_not_found"


# --------------------------------------------------------------------------- resolving inputs


def resolve_version(session: Session, actor: Actor, ref: str) -> AdapterVersion:
    """The live version a reference names, if ``actor`` may read it (else ``NotFound``)."""
    return adapters.resolve(session, actor, ref)


def _input_record(version: AdapterVersion, ref: str, weight: float | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "ref": ref,
        "resolved": adapters.version_ref(version),
        "version_id": version.id,
        "digest": version.digest,
    }
    if weight is not None:
        record["weight"] = weight
    return record


def _resolve_base(session: Session, name: str) -> BaseModelRecord:
    validate_base_name(name)
    base = session.scalar(select(BaseModelRecord).where(BaseModelRecord.name == name))
    if base is None:
        raise NotFound(f"base model '{name}' not found", details={"base": name})
    return base


def _base_record(session: Session, base: BaseModelRecord) -> dict[str, Any]:
    n_files = session.scalar(
        select(func.count())
        .select_from(BaseModelFile)
        .where(BaseModelFile.base_model_id == base.id)
    )
    if not n_files:
        raise Conflict(
            f"base model '{base.name}' has no files in the registry: register it with its "
            "files uploaded (loreg base register DIR --name NAME) before merging into it",
            details={"base": base.name},
        )
    return {"name": base.name, "id": base.id, "fingerprint": base.fingerprint}


def _parse_target(to: str) -> tuple[str, str, str | None]:
    """``ns/name[:tag]`` (no version: a combine creates one)."""
    path, sep, tag = to.partition(":")
    if "@" in path:
        raise InvalidInput(
            "the combine target is NS/NAME[:TAG]; it cannot name a version",
            details={"field": "target"},
        )
    parts = path.split("/")
    if len(parts) != 2:
        raise InvalidInput(
            f"invalid combine target {to[:100]!r}: expected NS/NAME[:TAG]",
            details={"field": "target"},
        )
    ns = validate_name(parts[0], what="namespace")
    name = validate_name(parts[1])
    return ns, name, (validate_name(tag, what="tag") if sep else None)


# --------------------------------------------------------------------------- submit


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool  # False when an identical job was returned instead


def _dedupe_key(job_type: str, identity: dict[str, Any]) -> str:
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return f"{job_type}:sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def find_duplicate(session: Session, dedupe_key: str) -> Job | None:
    """An identical job that is queued, running, or succeeded with its outputs still kept."""
    now = _now()
    return session.scalar(
        select(Job)
        .where(
            Job.dedupe_key == dedupe_key,
            Job.status.in_(DEDUPE_STATUSES),
            or_(Job.outputs_expire_at.is_(None), Job.outputs_expire_at > now),
        )
        .order_by(Job.created_at.desc())
        .limit(1)
    )


def _lock_dedupe_key(session: Session, dedupe_key: str) -> None:
    """Serialise concurrent submissions of the same job until commit, so the duplicate
    check that follows sees any identical job another transaction created.

    PostgreSQL: an advisory lock on the key. SQLite: the database's write lock, which a
    no-op UPDATE takes (the driver opens the transaction before it; a SELECT alone would
    run outside one), the same as ``BEGIN IMMEDIATE``; other writers wait for our commit
    (busy timeout)."""
    if is_postgres(session):
        key = int.from_bytes(hashlib.sha256(dedupe_key.encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    else:
        session.execute(
            update(Job)
            .where(false())
            .values(status=Job.status)
            .execution_options(synchronize_session=False)
        )


def _prepare(
    session: Session, principal: Principal, job_type: str, params: JobParams
) -> tuple[dict[str, Any], dict[str, Any], int | None]:
    """Resolve inputs with the submitter's rights: (stored params, identity, namespace id)."""
    stored: dict[str, Any] = params.model_dump(mode="json")
    namespace_id: int | None = None
    if isinstance(params, ValidateParams | ExportParams):
        version = resolve_version(session, principal, params.adapter)
        stored["inputs"] = [_input_record(version, params.adapter, None)]
        namespace_id = version.adapter.namespace_id
        identity: dict[str, Any] = {"digest": version.digest}
        if isinstance(params, ValidateParams):
            identity["version_id"] = version.id
            base_id = version.base_model_id
            if base_id is None:
                raise Conflict(
                    f"'{params.adapter}' records no base model to validate against",
                    details={"ref": params.adapter},
                )
            base = session.get(BaseModelRecord, base_id)
            assert base is not None
            stored["base"] = {"name": base.name, "id": base.id, "fingerprint": base.fingerprint}
            identity["base"] = base.fingerprint
        else:
            identity["dtype"] = params.dtype
        return stored, identity, namespace_id

    assert isinstance(params, MergeParams | CombineParams)
    versions = [resolve_version(session, principal, a.ref) for a in params.adapters]
    stored["inputs"] = [
        _input_record(v, a.ref, a.weight) for v, a in zip(versions, params.adapters, strict=True)
    ]
    knobs = {k: stored[k] for k in OPTION_NAMES}
    identity = {
        "inputs": [[v.digest, a.weight] for v, a in zip(versions, params.adapters, strict=True)],
        **knobs,
    }
    namespace_id = versions[0].adapter.namespace_id
    if isinstance(params, MergeParams):
        if params.base is not None:
            base = _resolve_base(session, params.base)
        else:
            ids = {v.base_model_id for v in versions}
            found = session.get(BaseModelRecord, ids.pop()) if len(ids) == 1 else None
            if found is None:
                raise InvalidInput(
                    "name the base model to merge into (params.base): the "
                    "adapters do not record one common base",
                    details={"field": "base"},
                )
            base = found
        stored["base"] = _base_record(session, base)
        identity.update(
            base=base.fingerprint, dtype=params.dtype, max_shard_bytes=params.max_shard_bytes
        )
        return stored, identity, namespace_id

    ns_name, name, tag = _parse_target(params.target)
    namespace = session.scalar(select(Namespace).where(Namespace.name == ns_name))
    if namespace is None:
        raise NotFound(f"namespace '{ns_name}' not found", details={"namespace": ns_name})
    require_write_namespace(session, principal, namespace)
    target_adapter = session.scalar(
        select(Adapter).where(Adapter.namespace_id == namespace.id, Adapter.name == name)
    )
    if target_adapter is not None:
        require_read_adapter(session, principal, target_adapter)
    bases = {v.base_model_id for v in versions}
    if len(bases) != 1 or None in bases:
        raise InvalidInput(
            "combine needs adapters recorded against one common base model",
            details={"bases": sorted({str(v.base_model_name) for v in versions})},
        )
    stored["target"] = {"namespace": ns_name, "name": name, "tag": tag}
    common = session.get(BaseModelRecord, bases.pop())
    if common is not None:
        stored["base"] = {"name": common.name, "id": common.id, "fingerprint": common.fingerprint}
    identity.update(
        target=[ns_name, name, tag], description=params.description, labels=params.labels
    )
    return stored, identity, namespace.id


def submit(
    session: Session,
    actor: Actor,
    job_type: str,
    params: Any,
    *,
    priority: int = 0,
    max_attempts: int = 3,
) -> Submitted:
    """Queue a job, or return the identical one already queued, running or succeeded.

    Needs a write-scoped token (a job spends worker time and stores outputs) and read
    access to every input (each is resolved with the submitter's rights).
    """
    principal = require_scope(actor, "write")
    parsed = parse_params(job_type, params)
    if isinstance(parsed, CombineParams):
        adapters.check_labels(parsed.labels)
        storable(parsed.description, field="description")
    if not -1000 <= priority <= 1000:
        raise InvalidInput("priority must be between -1000 and 1000", details={"field": "priority"})
    if priority > 0 and not is_site_admin(principal):
        priority = 0  # only admins may jump the queue
    stored, identity, namespace_id = _prepare(session, principal, job_type, parsed)
    dedupe_key = _dedupe_key(job_type, identity)
    _lock_dedupe_key(session, dedupe_key)
    existing = find_duplicate(session, dedupe_key)
    if existing is not None:
        return Submitted(existing, created=False)
    job = Job(
        type=job_type,
        status=JobStatus.QUEUED.value,
        priority=priority,
        params=stored,
        dedupe_key=dedupe_key,
        submitted_by=principal.user_id,
        namespace_id=namespace_id,
        max_attempts=max_attempts,
        progress=0.0,
        progress_message="queued",
        created_at=_now(),
    )
    session.add(job)
    session.flush()
    audit.record(
        session,
        principal,
        f"job.submit.{job_type}",
        "job",
        job.id,
        {"inputs": [i["resolved"] for i in stored.get("inputs", [])]},
    )
    return Submitted(job, created=True)


def enqueue_validation(
    session: Session,
    version: AdapterVersion,
    *,
    submitted_by: int | None = None,
    priority: int = 0,
    max_attempts: int = 3,
) -> Job:
    """Queue the tensor-level validation of a freshly pushed version (no permission check:
    the caller just created the version). Returns the existing job for the same version."""
    identity: dict[str, Any] = {"digest": version.digest, "version_id": version.id}
    base: dict[str, Any] | None = None
    if version.base_model_id is not None:
        record = session.get(BaseModelRecord, version.base_model_id)
        if record is not None:
            base = {"name": record.name, "id": record.id, "fingerprint": record.fingerprint}
            identity["base"] = record.fingerprint
    dedupe_key = _dedupe_key(JobType.VALIDATE.value, identity)
    existing = find_duplicate(session, dedupe_key)
    if existing is not None:
        return existing
    ref = adapters.version_ref(version)
    params: dict[str, Any] = {"adapter": ref, "inputs": [_input_record(version, ref, None)]}
    if base is not None:
        params["base"] = base
    job = Job(
        type=JobType.VALIDATE.value,
        status=JobStatus.QUEUED.value,
        priority=priority,
        params=params,
        dedupe_key=dedupe_key,
        submitted_by=submitted_by,
        namespace_id=version.adapter.namespace_id,
        max_attempts=max_attempts,
        progress=0.0,
        progress_message="queued",
        created_at=_now(),
    )
    session.add(job)
    session.flush()
    return job


# --------------------------------------------------------------------------- read


def _input_versions(session: Session, job: Job) -> list[AdapterVersion | None]:
    ids = [i.get("version_id") for i in (job.params or {}).get("inputs", [])]
    return [session.get(AdapterVersion, i) if isinstance(i, int) else None for i in ids]


def can_see(session: Session, actor: Actor, job: Job) -> bool:
    if actor is None:
        return False
    if actor.is_admin or job.submitted_by == actor.user_id:
        return True
    versions = _input_versions(session, job)
    return bool(versions) and all(
        v is not None and can_read_adapter(session, actor, v.adapter) for v in versions
    )


def get(session: Session, actor: Actor, job_id: str) -> Job:
    """A job the actor may see; ``NotFound`` otherwise (whether or not it exists)."""
    require_user(actor)
    job = session.get(Job, job_id) if isinstance(job_id, str) and len(job_id) <= 64 else None
    if job is None or not can_see(session, actor, job):
        raise JobNotFound(f"job '{str(job_id)[:64]}' not found", details={"job_id": job_id})
    return job


def list_jobs(
    session: Session,
    actor: Actor,
    *,
    status: Sequence[str] | None = None,
    type: str | None = None,
    submitted_by: str | None = None,
    namespace: str | None = None,
    mine: bool = False,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[Job]:
    """Newest first. Non-admins see their own jobs; admins see all (or ``mine``).

    ``cursor``: the ``next_cursor`` of the previous page.
    """
    principal = require_user(actor)
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST}", details={"field": "limit"})
    after_id = cursor_str(decode_cursor("jobs", cursor), "id", max_length=64)
    query = select(Job)
    if status:
        bad = [s for s in status if s not in {m.value for m in JobStatus}]
        if bad:
            raise InvalidInput(f"unknown status {bad[0][:30]!r}", details={"field": "status"})
        query = query.where(Job.status.in_(list(status)))
    if type is not None:
        if type not in {m.value for m in JobType}:
            raise InvalidInput(f"unknown job type {type[:30]!r}", details={"field": "type"})
        query = query.where(Job.type == type)
    if not principal.is_admin or mine:
        query = query.where(Job.submitted_by == principal.user_id)
    if submitted_by is not None:
        user = session.scalar(
            select(User).where(User.name == validate_name(submitted_by, what="user"))
        )
        query = query.where(Job.submitted_by == (user.id if user else -1))
    if namespace is not None:
        ns = session.scalar(
            select(Namespace).where(Namespace.name == validate_name(namespace, what="namespace"))
        )
        query = query.where(Job.namespace_id == (ns.id if ns else -1))
    if after_id is not None:
        after = session.get(Job, after_id)
        if after is None:
            raise InvalidInput("unknown cursor", details={"field": "cursor"})
        query = query.where(
            or_(
                Job.created_at < after.created_at,
                and_(Job.created_at == after.created_at, Job.id < after.id),
            )
        )
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    return page_of(list(session.scalars(query)), limit, "jobs", lambda j: {"id": j.id})


def _may_cancel(actor: Actor, job: Job) -> bool:
    return actor is not None and (job.submitted_by == actor.user_id or actor.is_admin)


def can_cancel(session: Session, actor: Actor, job: Job) -> bool:
    """Whether ``cancel`` would act on ``job``: it is unfinished, ``actor`` submitted it or
    is a site administrator, and acts with a write-scoped token. The UI shows its cancel
    button on this."""
    return (
        job.status not in TERMINAL
        and _may_cancel(actor, job)
        and actor is not None
        and actor.scope_level >= Level.WRITE
    )


def cancel(session: Session, actor: Actor, job_id: str) -> Job:
    """Cancel: a queued job is cancelled at once; a running one is asked to stop (its worker
    sees the flag within a few seconds). Cancelling a finished job is a ``Conflict``."""
    job = get(session, actor, job_id)
    principal = require_scope(actor, "write")
    if not can_cancel(session, principal, job):
        if not _may_cancel(principal, job):
            raise PermissionDenied(
                "only the job's submitter or an administrator may cancel it",
                details={"job_id": job.id},
            )
        if job.status == JobStatus.CANCELLED.value:
            return job
        raise Conflict(
            f"job {job.id} has already {job.status}",
            details={"job_id": job.id, "status": job.status},
        )
    now = _now()
    # Conditional: the worker may finish it between our read and this write.
    done = rows_matched(
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.QUEUED.value)
            .values(
                status=JobStatus.CANCELLED.value,
                cancel_requested=True,
                finished_at=now,
                progress_message="cancelled",
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    )
    if not done:
        session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.RUNNING.value)
            .values(cancel_requested=True, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    session.refresh(job)
    audit.record(session, principal, "job.cancel", "job", job.id, {"status": job.status})
    return job


def outputs(session: Session, actor: Actor, job_id: str) -> tuple[Job, list[JobArtifact]]:
    job = get(session, actor, job_id)
    if job.status != JobStatus.SUCCEEDED.value:
        raise Conflict(
            f"job {job.id} is {job.status}; outputs exist once it has succeeded",
            details={"job_id": job.id, "status": job.status},
        )
    if job.outputs_expire_at is not None and job.outputs_expire_at <= _now():
        raise NotFound(f"the outputs of job {job.id} have expired", details={"job_id": job.id})
    return job, list(job.artifacts)


def outputs_visible_to(session: Session, actor: Actor, digests: Sequence[str]) -> set[str]:
    """Those of ``digests`` that are outputs of a succeeded job the actor may see (blob
    reads and references go through here)."""
    if actor is None or not digests:
        return set()
    found: set[str] = set()
    verdicts: dict[str, bool] = {}
    for i in range(0, len(digests), 500):
        rows = session.execute(
            select(JobArtifact.blob_digest, Job)
            .join(Job, Job.id == JobArtifact.job_id)
            .where(
                JobArtifact.blob_digest.in_(list(digests[i : i + 500])),
                Job.status == JobStatus.SUCCEEDED.value,
            )
        )
        for digest, job in rows:
            if digest in found:
                continue
            if job.id not in verdicts:
                verdicts[job.id] = can_see(session, actor, job)
            if verdicts[job.id]:
                found.add(digest)
    return found
