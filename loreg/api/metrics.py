"""Prometheus metrics: ``GET /metrics``.

Two kinds:

- **Counted in this process** by an ASGI middleware: requests by method, route template
  (``/api/v1/blobs/{digest}``, never the raw path) and status; request latency; blob bytes
  received (uploads) and sent (downloads streamed by the API; downloads redirected to the
  store are counted as redirects, their bytes do not pass through the API).
- **Read from the database at scrape time** by a custom collector, so every API replica
  reports the same fleet-wide values: jobs by type and status, queue depth, job durations
  (a histogram over finished jobs), worker heartbeats, webhook deliveries by status, and
  stored blobs. Sum the per-process counters across replicas; take any one replica's
  database-derived gauges (they are identical), e.g. ``max by (type, status) (loreg_jobs)``.

Each app has its own ``CollectorRegistry`` (several apps in one process, as in tests, do
not collide). ``/metrics`` needs no token: scrape it from inside the network and do not
route it publicly (docs/security.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loreg.db.models import JobType
from loreg.services import stats

log = logging.getLogger("loreg.api")
access_log = logging.getLogger("loreg.access")

UNMATCHED = "<unmatched>"
BLOB_ROUTE_SUFFIX = "/blobs/{digest}"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
JOB_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 12 * 3600)


class Metrics:
    """The metric objects of one app."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "loreg_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "loreg_http_request_duration_seconds",
            "Time to the end of the response, by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.blob_bytes = Counter(
            "loreg_blob_bytes",
            "Blob bytes through the API: in = uploads accepted, "
            "out = downloads streamed by the API.",
            ["direction"],
            registry=self.registry,
        )
        self.blob_redirects = Counter(
            "loreg_blob_download_redirects",
            "Blob downloads redirected to the store (presigned URL).",
            registry=self.registry,
        )
        for direction in ("in", "out"):
            self.blob_bytes.labels(direction=direction)
        self.registry.register(DatabaseCollector(engine))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


#: Router prefixes a route's own ``path`` may lack (FastAPI keeps included routers' routes
#: relative to their prefix); only these literal prefixes are ever put back in front.
ROUTER_PREFIXES = ("/api/v1",)


def _route_template(scope: Scope) -> str:
    """The matched route's template with its router prefix (``/api/v1/blobs/{digest}``)."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return UNMATCHED
    path = str(scope.get("path", ""))
    for prefix in ROUTER_PREFIXES:
        if not template.startswith(prefix) and path.startswith(prefix + "/"):
            return prefix + template
    return template


class MetricsMiddleware:
    """Counts every HTTP request, its latency, and blob bytes; logs one access line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = {"status": 500, "in": 0, "out": 0}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["in"] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = int(message["status"])
            elif message["type"] == "http.response.body":
                state["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            self._observe(scope, state, time.perf_counter() - started)

    def _observe(self, scope: Scope, state: dict[str, int], elapsed: float) -> None:
        method = str(scope.get("method", ""))
        route = _route_template(scope)
        status = state["status"]
        m = self.metrics
        m.requests.labels(method, route, str(status)).inc()
        m.latency.labels(method, route, str(status)).observe(elapsed)
        if route.endswith(BLOB_ROUTE_SUFFIX):
            if method == "PUT" and status < 400:
                m.blob_bytes.labels(direction="in").inc(state["in"])
            elif method == "GET" and status in (200, 206):
                m.blob_bytes.labels(direction="out").inc(state["out"])
            elif method == "GET" and status in (302, 307):
                m.blob_redirects.inc()
        request_id = scope.get("state", {}).get("request_id")
        access_log.info(
            "%s %s %s",
            method,
            scope.get("path", ""),
            status,
            extra={
                "event": "http.request",
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "request_id": request_id,
                "bytes_in": state["in"],
                "bytes_out": state["out"],
            },
        )


class DatabaseCollector(Collector):
    """Gauges and a histogram computed from the database on each scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("loreg_database_up", "1 if the last scrape could read the database.")
        try:
            with Session(self.engine) as session:
                metrics = list(self._collect(session))
        except Exception as exc:
            log.warning("metrics: database unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _collect(self, session: Session) -> Iterator[Metric]:
        now = datetime.now(UTC)
        fleet = stats.collect(session)
        jobs = GaugeMetricFamily(
            "loreg_jobs", "Jobs by type and status.", labels=["type", "status"]
        )
        queue = GaugeMetricFamily("loreg_jobs_queue_depth", "Queued jobs by type.", labels=["type"])
        for (job_type, status), n in sorted(fleet.jobs.items()):
            jobs.add_metric([str(job_type), str(status)], n)
        for job_type in JobType:
            queue.add_metric([job_type.value], fleet.queued(job_type.value))
        yield jobs
        yield queue
        yield self._durations(fleet)

        beats = GaugeMetricFamily(
            "loreg_worker_last_heartbeat_timestamp_seconds",
            "When each worker last reported (Unix time); alert on time() - this.",
            labels=["worker", "hostname", "device"],
        )
        busy = GaugeMetricFamily(
            "loreg_worker_busy", "1 while the worker runs a job.", labels=["worker"]
        )
        for worker in fleet.workers:
            beats.add_metric([worker.worker_id, worker.hostname, worker.device], worker.last_seen)
            busy.add_metric([worker.worker_id], 1 if worker.busy else 0)
        leases = GaugeMetricFamily(
            "loreg_job_lease_renewed_timestamp_seconds",
            "Last lease renewal of each running job's worker (Unix time).",
            labels=["worker"],
        )
        for owner, renewed in fleet.lease_renewals.items():
            leases.add_metric([owner], renewed)
        yield beats
        yield busy
        yield leases

        deliveries = GaugeMetricFamily(
            "loreg_webhook_deliveries", "Webhook deliveries by status.", labels=["status"]
        )
        for status, n in fleet.deliveries.items():
            deliveries.add_metric([status], n)
        yield deliveries

        yield GaugeMetricFamily("loreg_blobs", "Blobs recorded in the database.", value=fleet.blobs)
        yield GaugeMetricFamily(
            "loreg_blob_stored_bytes", "Bytes of the recorded blobs.", value=fleet.blob_bytes
        )
        yield GaugeMetricFamily(
            "loreg_scrape_timestamp_seconds", "When this was computed.", value=now.timestamp()
        )

    def _durations(self, fleet: stats.RegistryStats) -> Metric:
        hist = HistogramMetricFamily(
            "loreg_job_duration_seconds",
            "Run time (start of the last attempt to finish) of finished jobs.",
            labels=["type", "status"],
        )
        for (job_type, status), values in sorted(fleet.job_durations.items()):
            buckets: list[tuple[str, float]] = []
            for bound in JOB_DURATION_BUCKETS:
                buckets.append((str(float(bound)), float(sum(1 for v in values if v <= bound))))
            buckets.append(("+Inf", float(len(values))))
            hist.add_metric([job_type, status], buckets, sum_value=sum(values))
        return hist


def install_metrics(app: FastAPI) -> Metrics:
    """Add the middleware and ``GET /metrics`` to an app built by ``create_app``."""
    metrics = Metrics(app.state.engine)
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return metrics
