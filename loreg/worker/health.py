"""A worker's own health: what it is doing, whether it can reach the database and the store,
and an HTTP endpoint an orchestrator probes (``LOREG_WORKER_HEALTH_PORT``).

- ``GET /healthz``: 200 while the worker is alive and making progress, *including* while it
  waits out a database or store outage (restarting it would not help; it resumes by itself);
  503 when neither its loop nor its running job has shown a sign of life for
  ``LOREG_WORKER_STALL_SECONDS`` (hung: restart it). The JSON body says what it is doing.
- ``GET /metrics``: Prometheus metrics of this process (outages seen, jobs by outcome, work
  folders swept). Fleet-wide job and heartbeat gauges are on the API's ``/metrics``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest

DEPENDENCIES = ("database", "store")
STATES = ("starting", "idle", "running", "waiting_for_database", "waiting_for_store", "stopping")


class WorkerHealth:
    """Thread-safe state of one worker, and its metrics registry."""

    def __init__(self, worker_id: str, *, stall_seconds: float) -> None:
        self.worker_id = worker_id
        self.stall_seconds = stall_seconds
        self._lock = threading.Lock()
        self._state = "starting"
        self._job_id: str | None = None
        self._last_activity = time.monotonic()
        self._last_activity_wall = time.time()
        self._down_since: dict[str, float] = {}
        self._back_at: dict[str, float] = {}
        self.registry = CollectorRegistry()
        self._up = Gauge(
            "loreg_worker_dependency_up",
            "1 if this worker's last use of the dependency succeeded.",
            ["dependency"],
            registry=self.registry,
        )
        self._outages = Counter(
            "loreg_worker_outages",
            "Outages of a dependency this worker rode out (or is in).",
            ["dependency"],
            registry=self.registry,
        )
        self._outage_seconds = Counter(
            "loreg_worker_outage_seconds",
            "Seconds this worker waited for a dependency to return.",
            ["dependency"],
            registry=self.registry,
        )
        self._jobs = Counter(
            "loreg_worker_jobs",
            "Job attempts this worker ended, by type and outcome.",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.folders_removed = Counter(
            "loreg_worker_work_folders_removed",
            "Dead attempts' work folders this worker removed.",
            registry=self.registry,
        )
        self._state_gauge = Gauge(
            "loreg_worker_state",
            "1 for the state the worker is in.",
            ["state"],
            registry=self.registry,
        )
        Gauge(
            "loreg_worker_last_activity_timestamp_seconds",
            "When the loop or the running job last showed progress (Unix time).",
            registry=self.registry,
        ).set_function(lambda: self._last_activity_wall)
        for dep in DEPENDENCIES:
            self._up.labels(dep).set(1)
            self._outages.labels(dep)
            self._outage_seconds.labels(dep)
        self._show_state()

    # ------------------------------------------------------------------ updates

    def beat(self) -> None:
        """A sign of progress (a loop turn, a merged tensor, a retry while waiting)."""
        self._last_activity = time.monotonic()
        self._last_activity_wall = time.time()

    def set_state(self, state: str, job_id: str | None = None) -> None:
        with self._lock:
            self._state = state
            self._job_id = job_id
            self._show_state()
        self.beat()

    @property
    def state(self) -> str:
        return self._state

    def _show_state(self) -> None:
        for s in STATES:
            self._state_gauge.labels(s).set(1 if s == self._state else 0)

    def down(self, dependency: str) -> bool:
        """Record a failed use; True if this starts an outage (it was up)."""
        self.beat()
        with self._lock:
            if dependency in self._down_since:
                return False
            self._down_since[dependency] = time.monotonic()
        self._up.labels(dependency).set(0)
        self._outages.labels(dependency).inc()
        return True

    def up(self, dependency: str) -> float | None:
        """Record a successful use; the outage's length in seconds if this ends one."""
        with self._lock:
            since = self._down_since.pop(dependency, None)
            if since is None:
                return None
            self._back_at[dependency] = time.monotonic()
        seconds = time.monotonic() - since
        self._up.labels(dependency).set(1)
        self._outage_seconds.labels(dependency).inc(seconds)
        return seconds

    def is_down(self, dependency: str) -> bool:
        return dependency in self._down_since

    def seconds_since_back(self, dependency: str) -> float | None:
        """Seconds since the last outage of ``dependency`` ended (None: none seen)."""
        back = self._back_at.get(dependency)
        return None if back is None else time.monotonic() - back

    def job_ended(self, job_type: str, outcome: str) -> None:
        self._jobs.labels(job_type, outcome).inc()

    # ------------------------------------------------------------------ reading

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            idle_for = now - self._last_activity
            return {
                "status": "ok" if idle_for <= self.stall_seconds else "stalled",
                "worker": self.worker_id,
                "state": self._state,
                "job_id": self._job_id,
                "seconds_since_progress": round(idle_for, 3),
                "dependencies": {
                    d: ("down" if d in self._down_since else "up") for d in DEPENDENCIES
                },
                "down_for_seconds": {d: round(now - t, 3) for d, t in self._down_since.items()},
            }

    def metrics(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """``/healthz`` and ``/metrics`` of a ``WorkerHealth`` on a daemon thread."""

    def __init__(self, health: WorkerHealth, host: str, port: int) -> None:
        self.health = health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    snap = health.snapshot()
                    self._answer(
                        200 if snap["status"] == "ok" else 503,
                        json.dumps(snap).encode(),
                        "application/json",
                    )
                elif path == "/metrics":
                    self._answer(200, health.metrics(), CONTENT_TYPE_LATEST)
                else:
                    body = {
                        "error": {
                            "code": "not_found",
                            "message": "no such path: try /healthz or /metrics",
                            "details": None,
                        }
                    }
                    self._answer(404, json.dumps(body).encode(), "application/json")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds would drown the job log

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="worker-health", daemon=True
        )

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
