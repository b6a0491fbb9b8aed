"""``/api/v1/jobs``: submit, inspect, list and cancel jobs; list a finished job's outputs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlalchemy.orm import Session

from loreg.api.deps import CurrentUser, SessionDep, SettingsDep
from loreg.api.openapi import errors
from loreg.api.schemas.jobs import (
    JobCreate,
    JobOut,
    JobOutputFile,
    JobOutputs,
    JobPage,
    JobStatusName,
    JobTypeName,
)
from loreg.db.models import Job
from loreg.services import jobs
from loreg.services.adapters import user_names

router = APIRouter(tags=["jobs"])


def jobs_out(session: Session, rows: Sequence[Job]) -> list[JobOut]:
    """A page of jobs, their submitters' names looked up in one query."""
    users = user_names(session, [j.submitted_by for j in rows])
    return [_job_out(j, users) for j in rows]


def job_out(session: Session, job: Job, *, deduplicated: bool = False) -> JobOut:
    return _job_out(job, user_names(session, [job.submitted_by]), deduplicated=deduplicated)


def _job_out(job: Job, users: dict[int, str], *, deduplicated: bool = False) -> JobOut:
    submitter = users.get(job.submitted_by) if job.submitted_by is not None else None
    duration = None
    if job.started_at is not None:
        end = job.finished_at or datetime.now(UTC)
        duration = round((end - job.started_at).total_seconds(), 3)
    return JobOut(
        id=job.id,
        type=job.type,
        status=job.status,  # type: ignore[arg-type]
        priority=job.priority,
        params=job.params or {},
        submitted_by=submitter,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        worker=job.lease_owner,
        lease_expires_at=job.lease_expires_at,
        progress=job.progress,
        progress_message=job.progress_message or "",
        result=job.result,
        error=job.error,
        cancel_requested=job.cancel_requested,
        outputs_expire_at=job.outputs_expire_at,
        duration_seconds=duration,
        deduplicated=deduplicated,
    )


@router.post(
    "/jobs",
    response_model=JobOut,
    status_code=status.HTTP_201_CREATED,
    summary="Queue a job (or get the identical one already queued, running or done)",
    responses={
        **errors(403, 404, 409),
        200: {"model": JobOut, "description": "An identical job existed"},
    },
)
def submit_job(
    body: JobCreate,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    response: Response,
) -> JobOut:
    """Queue a job: `validate`, `merge`, `export` or `combine`, with its `params`. The
    references are resolved now; an identical job already queued, running or done is
    answered instead (200). Poll `GET /jobs/{job_id}` for its status.
    """
    submitted = jobs.submit(
        session,
        user,
        body.type,
        body.params,
        priority=body.priority,
        max_attempts=settings.job_max_attempts,
    )
    session.commit()
    if not submitted.created:
        response.status_code = status.HTTP_200_OK
    return job_out(session, submitted.job, deduplicated=not submitted.created)


@router.get("/jobs", response_model=JobPage, summary="List jobs, newest first")
def list_jobs(
    session: SessionDep,
    user: CurrentUser,
    status_: Annotated[list[JobStatusName] | None, Query(alias="status")] = None,
    type_: Annotated[JobTypeName | None, Query(alias="type")] = None,
    submitted_by: Annotated[str | None, Query(max_length=96)] = None,
    namespace: Annotated[str | None, Query(max_length=96)] = None,
    mine: bool = False,
    cursor: Annotated[
        str | None, Query(max_length=1000, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=jobs.MAX_LIST)] = 50,
) -> JobPage:
    """Jobs the caller may see, newest first, filtered by status, type, submitter or namespace."""
    page = jobs.list_jobs(
        session,
        user,
        status=status_,
        type=type_,
        submitted_by=submitted_by,
        namespace=namespace,
        mine=mine,
        limit=limit,
        cursor=cursor,
    )
    return JobPage(jobs=jobs_out(session, page.items), next_cursor=page.next_cursor)


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    summary="A job's status and result",
    responses=errors(404),
)
def get_job(job_id: str, session: SessionDep, user: CurrentUser) -> JobOut:
    """A job's status (`queued`, `running`, `succeeded`, `failed`, `cancelled`), progress (0..1
    with a message), attempts, error and result.
    """
    return job_out(session, jobs.get(session, user, job_id))


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a queued job, or ask a running one to stop",
    responses=errors(403, 404, 409),
)
def cancel_job(job_id: str, session: SessionDep, user: CurrentUser) -> JobOut:
    """Cancel a queued job, or ask a running one to stop at its next step. 409 when it has
    already ended.
    """
    job = jobs.cancel(session, user, job_id)
    session.commit()
    return job_out(session, job)


@router.get(
    "/jobs/{job_id}/outputs",
    response_model=JobOutputs,
    summary="A finished job's output files (download each from /blobs/{digest})",
    responses=errors(404, 409),
)
def job_outputs(job_id: str, session: SessionDep, user: CurrentUser) -> JobOutputs:
    """The output files of a succeeded job (path, digest, size); download each from
    `/blobs/{digest}`. 409 while the job has not succeeded.
    """
    job, artifacts = jobs.outputs(session, user, job_id)
    files = [JobOutputFile(path=a.path, digest=a.blob_digest, size=a.size) for a in artifacts]
    return JobOutputs(job_id=job.id, files=files, total_size=sum(f.size for f in files))
