"""The job pages: the list, one job with its progress (polled), cancel, output downloads.

Outputs download with the browser's cookie (no Bearer token): a redirect to a presigned
URL where the store signs them, else streamed from the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from loreg.api.deps import SessionDep, SettingsDep, StoreDep
from loreg.api.streaming import iter_file
from loreg.db.models import Job, JobStatus
from loreg.errors import InvalidInput, LoregError, Unauthenticated
from loreg.services import adapters as svc
from loreg.services import jobs
from loreg.services.permissions import Principal
from loreg.ui.params import PAGE_SIZE, Text, opt
from loreg.ui.rendering import error_page, finish, friendly, login_redirect, not_found, render
from loreg.ui.session import COOKIE, FormDep, UiActor, csrf_ok

router = APIRouter(include_in_schema=False)


def _job_view(session: Any, actor: Principal, job: Job) -> dict[str, Any]:
    users = svc.user_names(session, [job.submitted_by])
    outputs: list[Any] = []
    outputs_note = None
    if job.status == JobStatus.SUCCEEDED.value:
        try:
            _, outputs = jobs.outputs(session, actor, job.id)
        except LoregError as exc:
            outputs_note = exc.message
    return {
        "job": job,
        "submitted_by": users.get(job.submitted_by or -1),
        "terminal": job.status in jobs.TERMINAL,
        "percent": round(100 * (job.progress or 0)),
        "outputs": outputs,
        "outputs_note": outputs_note,
        "can_cancel": jobs.can_cancel(session, actor, job),
        "inputs": [
            i.get("ref") or i.get("resolved")
            for i in (job.params or {}).get("inputs", [])
            if isinstance(i, dict)
        ],
    }


_STATUSES = [s.value for s in JobStatus]


@router.get("/jobs")
@friendly("job")
def job_list(
    request: Request, session: SessionDep, actor: UiActor, status: Text = None, cursor: Text = None
) -> Response:
    if actor is None:
        return login_redirect(request)
    wanted = [status] if status in _STATUSES else None
    try:
        page = jobs.list_jobs(session, actor, status=wanted, limit=PAGE_SIZE, cursor=opt(cursor))
    except InvalidInput:
        page = jobs.list_jobs(session, actor, status=wanted, limit=PAGE_SIZE)
    rows = page.items
    users = svc.user_names(session, [j.submitted_by for j in rows])
    params = [("status", status)] if wanted else []
    next_url = (
        "/ui/jobs?" + urlencode([*params, ("cursor", page.next_cursor)])
        if page.next_cursor
        else None
    )
    return render(
        request,
        "jobs.html",
        {
            "jobs": [(j, users.get(j.submitted_by or -1)) for j in rows],
            "status": status or "",
            "statuses": _STATUSES,
            "next_url": next_url,
            "title": "Jobs",
        },
    )


@router.get("/jobs/{job_id}/progress.json")
def job_progress(job_id: str, request: Request, session: SessionDep, actor: UiActor) -> Response:
    """What the job page's script polls (the cookie authenticates it)."""
    try:
        job = jobs.get(session, actor, job_id)
    except Unauthenticated:
        return JSONResponse({"error": "sign in"}, status_code=401)
    except LoregError:
        return JSONResponse({"error": "not found"}, status_code=404)
    return finish(
        request,
        JSONResponse(
            {
                "id": job.id,
                "status": job.status,
                "progress": job.progress,
                "percent": round(100 * (job.progress or 0)),
                "message": job.progress_message or "",
                "terminal": job.status in jobs.TERMINAL,
                "cancel_requested": job.cancel_requested,
            }
        ),
    )


@router.get("/jobs/{job_id}")
@friendly("job")
def job_page(job_id: str, request: Request, session: SessionDep, actor: UiActor) -> Response:
    job = jobs.get(session, actor, job_id)
    assert actor is not None
    return render(request, "job.html", {**_job_view(session, actor, job), "title": f"Job {job.id}"})


@router.post("/jobs/{job_id}/cancel")
@friendly("job")
def job_cancel(
    job_id: str, request: Request, session: SessionDep, actor: UiActor, form: FormDep
) -> Response:
    cookie = request.cookies.get(COOKIE)
    if actor is None or cookie is None:
        return login_redirect(request)
    if not csrf_ok(request, form, cookie):
        return error_page(
            request, 403, "Forbidden", "The form has expired; reload the page and try again."
        )
    job = jobs.cancel(session, actor, job_id)
    session.commit()
    return finish(request, RedirectResponse(f"/ui/jobs/{job.id}", status_code=303))


@router.get("/jobs/{job_id}/outputs/{path:path}")
@friendly("output")
def job_output(
    job_id: str,
    path: str,
    request: Request,
    session: SessionDep,
    actor: UiActor,
    settings: SettingsDep,
    store: StoreDep,
) -> Response:
    """Download one output file (the browser has the cookie, not a Bearer token)."""
    _, artifacts = jobs.outputs(session, actor, job_id)
    match = next((a for a in artifacts if a.path == path), None)
    if match is None:
        return not_found(request, "output file")
    digest, size = match.blob_digest, match.size
    session.close()
    url = store.presigned_url(digest, expires_in=settings.presign_expires_seconds)
    if url is not None:
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    filename = path.rsplit("/", 1)[-1]
    chunks: Iterator[bytes] = iter_file(store.open(digest), length=size)
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(size),
            "Cache-Control": "no-store",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}",
        },
    )
