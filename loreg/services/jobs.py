"""Jobs: submit, inspect and cancel them (API side); claim, lease and finish them (worker side).

The queue lives in the ``jobs`` table. A worker *claims* the oldest queued job of the highest
priority and holds a *lease* on it (owner + expiry) that it renews while it works. A job whose
lease expires goes back to the queue (its worker died) until ``max_attempts`` is reached, then
fails with the last error. Claiming is safe with any number of workers:

- PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` picks a row no other claimer holds;
- SQLite: a conditional ``UPDATE ... WHERE id = ? AND status = 'queued'`` whose row count says
  whether this claimer won (SQLite serialises writers, so exactly one does).

Every worker-side write is conditional on the lease (``lease_owner = me AND status =
'running'``): a worker that lost its lease (it stalled and another took over) cannot overwrite
the new attempt's progress or publish its outputs.

Permissions: a job reads only what its submitter can read (every input is resolved with the
submitter's rights at submit time), and ``combine`` needs write on its target. A job is visible
to its submitter, to site admins, and to anyone who can read all of its inputs (its outputs
are derived from nothing else); that is what lets deduplication hand one user's finished merge
to another user who asks for the very same merge.

Nothing here commits: the API route or the worker ends the transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from sqlalchemy import CursorResult, and_, false, func, or_, select, text, update
from sqlalchemy.orm import Session

from loreg.db.models import (
    Adapter,
    AdapterVersion,
    BaseModelFile,
    BaseModelRecord,
    Blob,
    Job,
    JobArtifact,
    JobStatus,
    JobType,
    Namespace,
    User,
)
from loreg.db.session import is_postgres
from loreg.errors import Conflict, InvalidInput, LoregError, NotFound, PermissionDenied
from loreg.refs import validate_base_name, validate_name
from loreg.services import adapters, audit, blobs, events
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
#: Job types whose outputs expire (``finish``): downloads, not registry content.
EXPIRING_OUTPUTS = (JobType.MERGE.value, JobType.EXPORT.value)
MAX_ADAPTERS = 32
MAX_LIST = 500
MIN_SHARD_BYTES = 4096
DTYPES = ("float16", "bfloat16", "float32")
METHODS = ("linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune")

DType = Literal["float16", "bfloat16", "float32"]
Method = Literal["linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune"]


def _now() -> datetime:
    return datetime.now(UTC)


class JobNotFound(NotFound):
    code = "job_not_found"


class LeaseLost(Conflict):
    """The worker no longer holds the job's lease: another attempt owns it now."""

    code = "lease_lost"


# --------------------------------------------------------------------------- parameters


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdapterInput(_Params):
    ref: str = Field(max_length=400)
    weight: float = Field(default=1.0, ge=-100.0, le=100.0, allow_inf_nan=False)


class _CombineKnobs(_Params):
    """The parameters of a multi-adapter method (PEFT ``add_weighted_adapter`` names)."""

    method: Method = "linear"
    density: float | None = Field(default=None, gt=0.0, le=1.0)
    majority_sign_method: Literal["total", "frequency"] = "total"
    svd_rank: int | None = Field(default=None, ge=1, le=65536)
    svd_clamp: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


def _adapters_field(value: Any) -> Any:
    """Accept ``["ns/a", ...]`` as shorthand for ``[{"ref": "ns/a"}, ...]``."""
    if isinstance(value, list):
        return [{"ref": v} if isinstance(v, str) else v for v in value]
    return value


class MergeParams(_CombineKnobs):
    base: str | None = Field(default=None, max_length=400)
    adapters: list[AdapterInput] = Field(min_length=1, max_length=MAX_ADAPTERS)
    dtype: DType | None = None
    max_shard_bytes: int | None = Field(default=None, ge=MIN_SHARD_BYTES)

    _norm = field_validator("adapters", mode="before")(_adapters_field)


class CombineParams(_CombineKnobs):
    adapters: list[AdapterInput] = Field(min_length=1, max_length=MAX_ADAPTERS)
    target: str = Field(max_length=400, validation_alias=AliasChoices("target", "to"))
    description: str = Field(default="", max_length=10_000)
    labels: dict[str, str] = Field(default_factory=dict)

    _norm = field_validator("adapters", mode="before")(_adapters_field)


class ExportParams(_Params):
    adapter: str = Field(max_length=400)
    dtype: DType | None = None


class ValidateParams(_Params):
    adapter: str = Field(max_length=400)


_PARAM_MODELS: dict[str, type[_Params]] = {
    JobType.MERGE.value: MergeParams,
    JobType.COMBINE.value: CombineParams,
    JobType.EXPORT.value: ExportParams,
    JobType.VALIDATE.value: ValidateParams,
}


def parse_params(job_type: str, params: Any) -> _Params:
    """Validate a job's parameters; ``InvalidInput`` naming each bad field."""
    model = _PARAM_MODELS.get(job_type)
    if model is None:
        raise InvalidInput(
            f"unknown job type {str(job_type)[:50]!r}",
            details={"field": "type", "allowed": sorted(_PARAM_MODELS)},
        )
    if not isinstance(params, dict):
        raise InvalidInput("params must be a JSON object", details={"field": "params"})
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidInput(
            f"invalid parameters for a {job_type} job: "
            + "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]),
            details={"errors": errors},
        ) from None


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
        select(func.count()).select_from(BaseModelFile)
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
        raise InvalidInput("the combine target is NS/NAME[:TAG]; it cannot name a version",
                           details={"field": "target"})
    parts = path.split("/")
    if len(parts) != 2:
        raise InvalidInput(f"invalid combine target {to[:100]!r}: expected NS/NAME[:TAG]",
                           details={"field": "target"})
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
        key = int.from_bytes(hashlib.sha256(dedupe_key.encode()).digest()[:8], "big",
                             signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
    else:
        session.execute(update(Job).where(false()).values(status=Job.status)
                        .execution_options(synchronize_session=False))


def _prepare(
    session: Session, principal: Principal, job_type: str, params: _Params
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
                raise Conflict(f"'{params.adapter}' records no base model to validate against",
                               details={"ref": params.adapter})
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
    knobs = {k: stored[k] for k in ("method", "density", "majority_sign_method", "svd_rank",
                                     "svd_clamp", "seed")}
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
                raise InvalidInput("name the base model to merge into (params.base): the "
                                   "adapters do not record one common base",
                                   details={"field": "base"})
            base = found
        stored["base"] = _base_record(session, base)
        identity.update(base=base.fingerprint, dtype=params.dtype,
                        max_shard_bytes=params.max_shard_bytes)
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
        raise InvalidInput("combine needs adapters recorded against one common base model",
                           details={"bases": sorted({str(v.base_model_name) for v in versions})})
    stored["target"] = {"namespace": ns_name, "name": name, "tag": tag}
    common = session.get(BaseModelRecord, bases.pop())
    if common is not None:
        stored["base"] = {"name": common.name, "id": common.id,
                          "fingerprint": common.fingerprint}
    identity.update(target=[ns_name, name, tag], description=params.description,
                    labels=params.labels)
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
        raise InvalidInput("priority must be between -1000 and 1000",
                           details={"field": "priority"})
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
    audit.record(session, principal, f"job.submit.{job_type}", "job", job.id,
                 {"inputs": [i["resolved"] for i in stored.get("inputs", [])]})
    return Submitted(job, created=True)


def enqueue_validation(
    session: Session, version: AdapterVersion, *, submitted_by: int | None = None,
    priority: int = 0, max_attempts: int = 3,
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
        type=JobType.VALIDATE.value, status=JobStatus.QUEUED.value, priority=priority,
        params=params, dedupe_key=dedupe_key, submitted_by=submitted_by,
        namespace_id=version.adapter.namespace_id, max_attempts=max_attempts,
        progress=0.0, progress_message="queued", created_at=_now(),
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
    before: str | None = None,
) -> list[Job]:
    """Newest first. Non-admins see their own jobs; admins see all (or ``mine``).

    ``before`` is a job id: the page continues after it (cursor pagination).
    """
    principal = require_user(actor)
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST}", details={"field": "limit"})
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
        user = session.scalar(select(User).where(User.name == validate_name(submitted_by,
                                                                            what="user")))
        query = query.where(Job.submitted_by == (user.id if user else -1))
    if namespace is not None:
        ns = session.scalar(select(Namespace).where(
            Namespace.name == validate_name(namespace, what="namespace")))
        query = query.where(Job.namespace_id == (ns.id if ns else -1))
    if before is not None:
        cursor = session.get(Job, before) if len(before) <= 64 else None
        if cursor is None:
            raise InvalidInput("unknown cursor", details={"field": "before"})
        query = query.where(or_(Job.created_at < cursor.created_at,
                                and_(Job.created_at == cursor.created_at, Job.id < cursor.id)))
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    return list(session.scalars(query))


def _may_cancel(actor: Actor, job: Job) -> bool:
    return actor is not None and (job.submitted_by == actor.user_id or actor.is_admin)


def can_cancel(session: Session, actor: Actor, job: Job) -> bool:
    """Whether ``cancel`` would act on ``job``: it is unfinished, ``actor`` submitted it or
    is a site administrator, and acts with a write-scoped token. The UI shows its cancel
    button on this."""
    return (job.status not in TERMINAL and _may_cancel(actor, job)
            and actor is not None and actor.scope_level >= Level.WRITE)


def cancel(session: Session, actor: Actor, job_id: str) -> Job:
    """Cancel: a queued job is cancelled at once; a running one is asked to stop (its worker
    sees the flag within a few seconds). Cancelling a finished job is a ``Conflict``."""
    job = get(session, actor, job_id)
    principal = require_scope(actor, "write")
    if not can_cancel(session, principal, job):
        if not _may_cancel(principal, job):
            raise PermissionDenied("only the job's submitter or an administrator may cancel it",
                                   details={"job_id": job.id})
        if job.status == JobStatus.CANCELLED.value:
            return job
        raise Conflict(f"job {job.id} has already {job.status}",
                       details={"job_id": job.id, "status": job.status})
    now = _now()
    # Conditional: the worker may finish it between our read and this write.
    done = _rowcount(session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.QUEUED.value)
        .values(status=JobStatus.CANCELLED.value, cancel_requested=True, finished_at=now,
                progress_message="cancelled", updated_at=now)
        .execution_options(synchronize_session=False)
    ))
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
        raise Conflict(f"job {job.id} is {job.status}; outputs exist once it has succeeded",
                       details={"job_id": job.id, "status": job.status})
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
            .where(JobArtifact.blob_digest.in_(list(digests[i : i + 500])),
                   Job.status == JobStatus.SUCCEEDED.value)
        )
        for digest, job in rows:
            if digest in found:
                continue
            if job.id not in verdicts:
                verdicts[job.id] = can_see(session, actor, job)
            if verdicts[job.id]:
                found.add(digest)
    return found


# --------------------------------------------------------------------------- worker side


def _rowcount(result: Any) -> int:
    """Rows an UPDATE matched (``Session.execute`` is typed as returning a plain Result)."""
    return int(cast(CursorResult[Any], result).rowcount)


def claim(
    session: Session,
    worker_id: str,
    *,
    lease_seconds: float,
    types: Sequence[str] | None = None,
    now: datetime | None = None,
) -> Job | None:
    """Take the next queued job (highest priority, then oldest) under a lease, or ``None``.

    Marks it running and counts the attempt; the caller commits at once so that other
    workers see it taken.
    """
    now = now or _now()
    base = select(Job.id).where(Job.status == JobStatus.QUEUED.value)
    if types:
        base = base.where(Job.type.in_(list(types)))
    base = base.order_by(Job.priority.desc(), Job.created_at, Job.id)
    values = dict(
        status=JobStatus.RUNNING.value,
        lease_owner=worker_id,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
        attempts=Job.attempts + 1,
        started_at=func.coalesce(Job.started_at, now),
        progress=0.0,
        progress_message="starting",
        updated_at=now,
    )
    if is_postgres(session):
        job_id = session.scalar(base.limit(1).with_for_update(skip_locked=True))
        if job_id is None:
            return None
        session.execute(update(Job).where(Job.id == job_id).values(**values)
                        .execution_options(synchronize_session=False))
    else:
        job_id = None
        for candidate in session.scalars(base.limit(8)).all():
            won = _rowcount(session.execute(
                update(Job)
                .where(Job.id == candidate, Job.status == JobStatus.QUEUED.value)
                .values(**values)
                .execution_options(synchronize_session=False)
            ))
            if won == 1:
                job_id = candidate
                break
        if job_id is None:
            return None
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    return job


@dataclass(frozen=True)
class LeaseState:
    owned: bool  # False: the job is no longer ours (expired and re-claimed, or finished)
    cancel_requested: bool


def renew_lease(
    session: Session, job_id: str, worker_id: str, *, lease_seconds: float,
    now: datetime | None = None,
) -> LeaseState:
    """Push the lease expiry forward and report whether cancellation was asked for."""
    now = now or _now()
    owned = _rowcount(session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == worker_id,
               Job.status == JobStatus.RUNNING.value)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )) == 1
    return LeaseState(owned=owned, cancel_requested=cancel_requested(session, job_id))


def cancel_requested(session: Session, job_id: str) -> bool:
    """Whether someone asked to cancel the job (its worker polls this while it runs)."""
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def record_progress(
    session: Session, job_id: str, worker_id: str, progress: float, message: str = ""
) -> bool:
    """Write progress (clamped to 0..1); ``False`` if the lease is no longer ours."""
    value = min(1.0, max(0.0, float(progress)))
    return _rowcount(session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == worker_id,
               Job.status == JobStatus.RUNNING.value)
        .values(progress=value, progress_message=message[:1000])
        .execution_options(synchronize_session=False)
    )) == 1


def _lock_owned(session: Session, job_id: str, worker_id: str) -> Job:
    """The job row, locked on PostgreSQL, if this worker still holds its lease."""
    query = select(Job).where(Job.id == job_id)
    if is_postgres(session):
        query = query.with_for_update()
    job = session.scalar(query.execution_options(populate_existing=True))
    if job is None or job.status != JobStatus.RUNNING.value or job.lease_owner != worker_id:
        raise LeaseLost(f"job {job_id} is no longer leased to worker {worker_id}",
                        details={"job_id": job_id})
    return job


def _take_running(session: Session, job_id: str, worker_id: str, **values: Any) -> Job:
    """Move a job we hold out of ``running`` (conditional update: single writer wins)."""
    job = _lock_owned(session, job_id, worker_id)
    won = _rowcount(session.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == worker_id,
               Job.status == JobStatus.RUNNING.value)
        .values(lease_owner=None, lease_expires_at=None, updated_at=_now(), **values)
        .execution_options(synchronize_session=False)
    ))
    if won != 1:
        raise LeaseLost(f"job {job_id} is no longer leased to worker {worker_id}",
                        details={"job_id": job_id})
    session.refresh(job)
    return job


@dataclass(frozen=True)
class Artifact:
    path: str
    digest: str
    size: int


def finish(
    session: Session, job_id: str, worker_id: str, *, result: dict[str, Any],
    artifacts: Sequence[Artifact] = (), outputs_ttl: timedelta | None = None,
) -> Job:
    """Succeed: result, blobs and artifact rows in the caller's one transaction.

    The outputs of merge and export jobs expire ``outputs_ttl`` after now
    (``LOREG_JOB_OUTPUTS_EXPIRE_HOURS``; ``None``: never); then GC frees them and an
    identical submit runs the job again. ``LeaseLost`` if another attempt owns the job now:
    then nothing of ours is recorded.
    """
    now = _now()
    job = _take_running(session, job_id, worker_id, status=JobStatus.SUCCEEDED.value,
                        result=result, error=None, progress=1.0, progress_message="done",
                        finished_at=now)
    for art in artifacts:
        ensure_blob(session, art.digest, art.size)
        session.add(JobArtifact(job_id=job.id, path=art.path, blob_digest=art.digest,
                                size=art.size))
    if artifacts and outputs_ttl is not None and job.type in EXPIRING_OUTPUTS:
        job.outputs_expire_at = now + outputs_ttl
    session.flush()
    return events.job_finished(session, job)


def ensure_blob(session: Session, digest: str, size: int) -> None:
    """Record a stored blob (idempotent, safe against a concurrent insert on PostgreSQL)."""
    if session.get(Blob, digest) is None:
        blobs.insert_blob_row(session, digest, size)


def error_dict(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, LoregError):
        return exc.to_dict()
    return {"code": "internal", "message": f"{type(exc).__name__}: {exc}"[:2000],
            "details": None}


def fail(
    session: Session, job_id: str, worker_id: str, error: dict[str, Any], *,
    retry: bool = False, count_attempt: bool = True,
) -> Job:
    """Record a failed attempt: back to the queue when ``retry`` and attempts remain,
    else ``failed`` with this error.

    ``count_attempt=False`` hands the job back without spending the attempt (its worker was
    stopped, or the database or store went away under it: not the job's fault), however
    many attempts it has had.
    """
    now = _now()
    job = _lock_owned(session, job_id, worker_id)
    if retry and not job.cancel_requested and (
            not count_attempt or job.attempts < job.max_attempts):
        message = str(error.get("message", ""))
        if count_attempt:
            return _take_running(session, job_id, worker_id, status=JobStatus.QUEUED.value,
                                 error=error, progress=0.0,
                                 progress_message=f"retrying after: {message}"[:1000])
        return _take_running(session, job_id, worker_id, status=JobStatus.QUEUED.value,
                             error=error, progress=0.0, attempts=Job.attempts - 1,
                             progress_message=f"handed back (not counted as an attempt): "
                                              f"{message}"[:1000])
    return events.job_finished(session, _take_running(
        session, job_id, worker_id, status=JobStatus.FAILED.value, error=error,
        finished_at=now, progress_message=str(error.get("message", "failed"))[:1000]))


def mark_cancelled(session: Session, job_id: str, worker_id: str) -> Job:
    return _take_running(session, job_id, worker_id, status=JobStatus.CANCELLED.value,
                         finished_at=_now(), progress_message="cancelled")


def requeue_expired(session: Session, *, now: datetime | None = None) -> list[str]:
    """Put running jobs whose lease expired back in the queue (or fail/cancel them).

    Returns the ids touched. Safe to run from every worker at once: each row moves under a
    conditional update on its old lease.
    """
    now = now or _now()
    query = select(Job).where(Job.status == JobStatus.RUNNING.value,
                              Job.lease_expires_at < now).limit(100)
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    touched: list[str] = []
    for job in session.scalars(query).all():
        owner = job.lease_owner
        lost = {"code": "lease_expired",
                "message": f"worker {owner} stopped renewing its lease (it died or stalled) "
                           f"during attempt {job.attempts}",
                "details": {"worker": owner, "attempt": job.attempts}}
        values: dict[str, Any]
        message = str(lost["message"])
        if job.cancel_requested:
            values = dict(status=JobStatus.CANCELLED.value, finished_at=now,
                          progress_message="cancelled")
        elif job.attempts >= job.max_attempts:
            values = dict(status=JobStatus.FAILED.value, finished_at=now, error=lost,
                          progress_message=f"gave up after {job.attempts} attempts: "
                                           f"{message}"[:1000])
        else:
            values = dict(status=JobStatus.QUEUED.value, error=lost, progress=0.0,
                          progress_message="re-queued: " + message[:900])
        moved = _rowcount(session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.RUNNING.value,
                   Job.lease_owner == owner, Job.lease_expires_at < now)
            .values(lease_owner=None, lease_expires_at=None, updated_at=now, **values)
            .execution_options(synchronize_session=False)
        ))
        if moved:
            touched.append(job.id)
            if values["status"] == JobStatus.FAILED.value:
                events.emit(session, events.JOB_FAILED, job.namespace_id,
                            {**events.job_payload(job), **values, "status": "failed"})
    return touched
