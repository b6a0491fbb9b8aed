"""Job helpers: submit, wait with progress, download outputs (docs/design.md §6)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from loreg.client._http import Http
from loreg.client.cache import BlobCache
from loreg.client.errors import JobFailed
from loreg.client.models import Job, JobOutputs
from loreg.client.transfer import ProgressFactory, PullResult, materialize

#: Called with the job each time it is polled (status, progress, message ...).
JobCallback = Callable[[Job], object]


def submit(http: Http, job_type: str, params: dict[str, Any], **extra: Any) -> Job:
    body = {"type": job_type, "params": params, **{k: v for k, v in extra.items() if v is not None}}
    return Job.from_api(http.json("POST", "/jobs", json=body, idempotent=False))


def get(http: Http, job_id: str) -> Job:
    return Job.from_api(http.json("GET", f"/jobs/{job_id}"))


def cancel(http: Http, job_id: str) -> Job:
    return Job.from_api(http.json("POST", f"/jobs/{job_id}/cancel", idempotent=True))


def wait(
    http: Http,
    job_id: str,
    *,
    callback: JobCallback | None = None,
    poll: float = 0.5,
    timeout: float | None = None,
    raise_on_failure: bool = True,
) -> Job:
    """Poll until the job ends; ``JobFailed`` when it failed or was cancelled (if asked)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = min(poll, 0.2)
    while True:
        job = get(http, job_id)
        if callback is not None:
            callback(job)
        if job.done:
            if raise_on_failure and job.status != "succeeded":
                msg = job.error_message
                raise JobFailed(
                    f"job {job_id} {job.status}" + (f": {msg}" if msg else ""),
                    code=f"job_{job.status}",
                    details=job.to_dict(),
                    job=job,
                )
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
        time.sleep(delay)
        delay = min(delay * 1.5, poll)


def outputs(http: Http, job_id: str) -> JobOutputs:
    return JobOutputs.from_api(http.json("GET", f"/jobs/{job_id}/outputs"))


def download_outputs(
    http: Http,
    cache: BlobCache,
    job_id: str,
    dest: Path,
    *,
    force: bool = False,
    progress: ProgressFactory | None = None,
) -> PullResult:
    """Download a finished job's output files into ``dest``, exactly like a pull."""
    return materialize(
        http, cache, outputs(http, job_id).files, dest, force=force, progress=progress
    )


def paginate(
    http: Http, path: str, params: dict[str, Any], *, key: str, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Follow cursor pagination (``next_cursor`` / ``cursor``) until the list ends."""
    query = {k: v for k, v in params.items() if v is not None}
    if limit is not None:
        query.setdefault("limit", min(limit, 100))
    seen = 0
    while True:
        page = http.json("GET", path, params=query)
        if isinstance(page, list):
            items, cursor = page, None
        else:
            items = page.get(key)
            if items is None:
                items = page.get("items", page.get("results", []))
            cursor = page.get("next_cursor") or page.get("cursor")
        for item in items:
            yield item
            seen += 1
            if limit is not None and seen >= limit:
                return
        if not cursor or not items:
            return
        query["cursor"] = cursor
