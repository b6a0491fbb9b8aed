"""The job pages over HTTP on both backends: progress, cancel (with CSRF), output downloads."""

from __future__ import annotations

import re

from loreg.ui.session import COOKIE, csrf_token
from tests.factories.ui_world import World, page_html


def test_jobs_pages_progress_and_cancel(world: World) -> None:
    job_id, worker = world.running_job(0.25, "exporting tensors")
    signed_out = world.ui()
    r = signed_out.get(f"/ui/jobs/{job_id}")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=")
    assert signed_out.get(f"/ui/jobs/{job_id}/progress.json").status_code == 401
    assert signed_out.get("/ui/jobs").status_code == 303

    owner = world.ui(world.owner)
    page = page_html(owner.get(f"/ui/jobs/{job_id}"))
    assert 'aria-live="polite"' in page and 'value="25"' in page
    assert "exporting tensors" in page and 'http-equiv="refresh"' in page  # inside <noscript>
    assert "Cancel job" in page
    assert job_id[:12] in page_html(owner.get("/ui/jobs"))
    world.progress(job_id, worker, 0.6, "writing files")
    doc = owner.get(f"/ui/jobs/{job_id}/progress.json").json()
    assert doc["percent"] == 60 and doc["message"] == "writing files" and not doc["terminal"]

    # a member who may see the job (it reads a public adapter) may not cancel it
    member = world.ui(world.member)
    page = page_html(member.get(f"/ui/jobs/{job_id}"))
    assert "Cancel job" not in page
    r = member.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": csrf_token(member.cookies[COOKIE])})
    assert r.status_code == 403
    # the submitter may, with the form's token only
    r = owner.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": "forged"})
    assert r.status_code == 403
    r = owner.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": csrf_token(owner.cookies[COOKIE])})
    assert r.status_code == 303
    doc = owner.get(f"/ui/jobs/{job_id}/progress.json").json()
    assert doc["cancel_requested"] is True
    assert "cancellation requested" in owner.get(f"/ui/jobs/{job_id}").text


def test_finished_job_outputs_download(world: World) -> None:
    r = world.server.client(world.owner.token).post(
        "/jobs", json={"type": "export", "params": {"adapter": world.secret}}
    )
    assert r.status_code in (200, 201), r.text
    job_id = r.json()["id"]
    from loreg.worker.loop import Worker

    worker = Worker(
        world.server.settings,
        sessions=world.server.app.state.sessionmaker,
        store=world.server.app.state.store,
        types=["export"],
        device="cpu",
    )
    try:
        assert worker.run(once=True) == 1
    finally:
        worker.close()
    owner = world.ui(world.owner)
    page = page_html(owner.get(f"/ui/jobs/{job_id}"))
    assert "succeeded" in page and "Cancel job" not in page and "refresh" not in page
    links = re.findall(rf'href="(/ui/jobs/{job_id}/outputs/[^"]+)"', page)
    assert links, page
    for link in links:
        r = owner.get(link, follow_redirects=True)
        assert r.status_code == 200 and r.content
    assert owner.get(f"/ui/jobs/{job_id}/outputs/nope.bin").status_code == 404
    # a private input: the outsider may not see the job; signed out, sign in first
    assert world.ui(world.outsider).get(links[0]).status_code == 404
    assert world.ui(world.outsider).get(f"/ui/jobs/{job_id}").status_code == 404
    assert world.ui().get(links[0]).status_code == 303
