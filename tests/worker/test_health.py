"""The worker's health endpoint over real HTTP: 200 while working or waiting out an outage,
503 once stalled; Prometheus metrics of outages and job outcomes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from loreg.worker.health import HealthServer, WorkerHealth


@pytest.fixture
def served() -> Iterator[tuple[WorkerHealth, str]]:
    health = WorkerHealth("host:1:abc", stall_seconds=0.5)
    server = HealthServer(health, "127.0.0.1", 0).start()
    try:
        yield health, f"http://127.0.0.1:{server.port}"
    finally:
        server.close()


def test_healthz_reports_state_and_outages(served: tuple[WorkerHealth, str]) -> None:
    health, url = served
    health.set_state("running", "job1")
    r = httpx.get(url + "/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["state"] == "running" and body["job_id"] == "job1"
    assert body["dependencies"] == {"database": "up", "store": "up"}

    assert health.down("database") is True
    assert health.down("database") is False  # one outage, not two
    health.set_state("waiting_for_database", "job1")
    body = httpx.get(url + "/healthz").json()
    assert body["status"] == "ok"  # waiting out an outage is healthy: no restart needed
    assert body["dependencies"]["database"] == "down"
    assert body["down_for_seconds"]["database"] >= 0

    time.sleep(0.05)
    seconds = health.up("database")
    assert seconds is not None and seconds >= 0.05
    assert health.up("database") is None
    since = health.seconds_since_back("database")
    assert since is not None and since < 5


def test_healthz_503_when_stalled(served: tuple[WorkerHealth, str]) -> None:
    health, url = served
    time.sleep(0.7)  # no beat for longer than stall_seconds
    r = httpx.get(url + "/healthz")
    assert r.status_code == 503 and r.json()["status"] == "stalled"
    health.beat()
    assert httpx.get(url + "/healthz").status_code == 200


def test_metrics(served: tuple[WorkerHealth, str]) -> None:
    health, url = served
    health.down("store")
    health.up("store")
    health.down("database")
    health.job_ended("merge", "succeeded")
    health.job_ended("merge", "requeued")
    health.folders_removed.inc(2)
    r = httpx.get(url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'loreg_worker_outages_total{dependency="store"} 1.0' in text
    assert 'loreg_worker_outages_total{dependency="database"} 1.0' in text
    assert 'loreg_worker_dependency_up{dependency="database"} 0.0' in text
    assert 'loreg_worker_dependency_up{dependency="store"} 1.0' in text
    assert 'loreg_worker_jobs_total{outcome="succeeded",type="merge"} 1.0' in text
    assert "loreg_worker_work_folders_removed_total 2.0" in text
    assert "loreg_worker_last_activity_timestamp_seconds" in text
    assert httpx.get(url + "/other").status_code == 404
