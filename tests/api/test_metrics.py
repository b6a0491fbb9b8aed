"""``/metrics`` after a push, a pull and a job: the matching counters and gauges move."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from loreg.worker.loop import Worker
from tests.factories.pushes import Models, build_models, push, register_base
from tests.fixtures.api import RegistryServer, unique_name


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return build_models(tmp_path_factory.mktemp("models"))


def scrape(server: RegistryServer) -> str:
    r = server.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels...}`` (labels in any order; others ignored); 0 if absent."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(4))
    return total


def test_metrics_after_push_pull_and_job(
    registry_server: RegistryServer, models: Models, tmp_path: Path
) -> None:
    owner = registry_server.make_user()
    org = registry_server.make_org(owner)
    client = registry_server.client(owner.token)
    base = "test/" + unique_name("Tiny-Llama")
    assert register_base(client, models.base, base).status_code == 201
    before = scrape(registry_server)
    bytes_in_before = value(before, "loreg_blob_bytes_total", direction="in")

    # push
    r = push(client, models.adapter.path, f"{org}/tiny", base=base)
    assert r.status_code == 201, r.text
    version = r.json()
    pushed = sum(f["size"] for f in version["files"])

    after_push = scrape(registry_server)
    route = "/api/v1/adapters/{namespace}/{name}/versions"
    assert (
        value(after_push, "loreg_http_requests_total", method="POST", route=route, status="201")
        == 1
    )
    assert value(
        after_push,
        "loreg_http_requests_total",
        method="PUT",
        route="/api/v1/blobs/{digest}",
        status="201",
    ) + value(
        after_push,
        "loreg_http_requests_total",
        method="PUT",
        route="/api/v1/blobs/{digest}",
        status="200",
    ) >= len(version["files"])
    assert value(after_push, "loreg_blob_bytes_total", direction="in") - bytes_in_before == pushed
    assert value(
        after_push,
        "loreg_http_request_duration_seconds_count",
        method="PUT",
        route="/api/v1/blobs/{digest}",
    ) >= len(version["files"])
    # the push queued a validation job
    assert value(after_push, "loreg_jobs", type="validate", status="queued") >= 1
    assert value(after_push, "loreg_jobs_queue_depth", type="validate") >= 1
    # route templates, never raw digests, label the requests
    assert "sha256:" not in "".join(
        line for line in after_push.splitlines() if line.startswith("loreg_http_requests")
    )

    # pull: every file (streamed by the API locally, redirected to the store on S3)
    out_before = value(after_push, "loreg_blob_bytes_total", direction="out")
    redirects_before = value(after_push, "loreg_blob_download_redirects_total")
    for f in version["files"]:
        resp = client.get(f"/blobs/{f['digest']}")
        if resp.status_code == 307:
            resp = httpx.get(resp.headers["location"], timeout=30)
        assert resp.status_code == 200
    after_pull = scrape(registry_server)
    streamed = value(after_pull, "loreg_blob_bytes_total", direction="out") - out_before
    redirected = value(after_pull, "loreg_blob_download_redirects_total") - redirects_before
    if registry_server.backend == "sqlite+local":
        assert streamed == pushed and redirected == 0
    else:
        assert redirected == len(version["files"]) and streamed == 0
    assert value(
        after_pull, "loreg_http_requests_total", method="GET", route="/api/v1/blobs/{digest}"
    ) >= len(version["files"])

    # a job: a worker runs the queued validation
    worker = Worker(registry_server.settings, worker_id="metrics-test-worker", device="cpu")
    try:
        assert worker.run(once=True) >= 1
    finally:
        worker.close()
    after_job = scrape(registry_server)
    assert value(after_job, "loreg_jobs", type="validate", status="succeeded") >= 1
    assert value(after_job, "loreg_jobs_queue_depth", type="validate") == 0
    assert (
        value(after_job, "loreg_job_duration_seconds_count", type="validate", status="succeeded")
        >= 1
    )
    assert value(after_job, "loreg_database_up") == 1
    assert (
        value(
            after_job,
            "loreg_worker_last_heartbeat_timestamp_seconds",
            worker="metrics-test-worker",
            device="cpu",
        )
        > 0
    )


def test_unmatched_paths_do_not_explode_cardinality(registry_server: RegistryServer) -> None:
    for i in range(3):
        assert registry_server.get(f"/nothing-here-{i}").status_code == 404
    text = scrape(registry_server)
    assert value(text, "loreg_http_requests_total", route="<unmatched>", status="404") >= 3
    assert "nothing-here" not in text
