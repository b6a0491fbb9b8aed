"""The metadata read path: throughput against peers, and latency as the registry grows.

    .venv/bin/python bench/api.py                       # everything, about 30 minutes
    .venv/bin/python bench/api.py --sizes 1000,100000   # a quicker growth table
    .venv/bin/python bench/api.py --no-growth           # throughput only

One run prints:

1. **Throughput**: req/s, p50 and p99 of ``GET version`` and search (``GET /adapters?
   limit=20``) on a registry of 20 adapters x 2 versions pushed through the API, against
   (a) a bare FastAPI app serving loreg's own response bodies (the framework's floor, same
   uvicorn), and (b) MLflow's model registry server (``mlflow server --workers 1`` on
   SQLite; ``model-versions/get`` and ``registered-models/search``), installed in its own
   virtual environment ``bench/.venv-mlflow`` (created on first use; not a loreg
   dependency). Same client for all: one asyncio process, ``--concurrency`` tasks, each
   with its own keep-alive connection. loreg on the embedded default (SQLite), then on
   PostgreSQL with one and with ``--workers 2`` API processes. All servers run at once
   and are measured in turn, ``--rounds`` times, so load from elsewhere hits them alike.
2. **Growth**: on PostgreSQL seeded in bulk (``bench/_growth.py``) to 1k, 100k and 1M
   versions: the median latency through the API of resolve (``ns/name:tag``, ``@N``,
   ``@sha256:``), show, the version list and search by base / target / rank / label / text,
   the ratio 1M / 1k, and the ``EXPLAIN ANALYZE`` plan of every SQL statement each request
   runs at the largest size (with a check that no statement scans a large table).

The PostgreSQL cluster is a throwaway one (``initdb`` in a temp folder, fsync off).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _growth
from _load import LoadResult, run_load
from _seed_api import seed_registry
from _stacks import (
    bare_server,
    loreg_server,
    mlflow_python,
    mlflow_server,
    postgres,
)

SEARCH_LIMIT = 20


def fmt_row(label: str, r: LoadResult, floor: float | None, peer: float | None) -> str:
    vs = f"{r.rate / floor:5.2f}x" if floor else "    -"
    vp = f"{r.rate / peer:6.2f}x" if peer else "     -"
    cpu = r.cpu_per_request
    cpu_text = f"{cpu * 1e6:8.0f}" if cpu is not None else "       -"
    err = f"  errors {r.errors}" if r.errors else ""
    return (
        f"  {label:52s} {r.rate:7.0f} {r.p50 * 1000:8.1f} {r.p99 * 1000:8.1f} {cpu_text}"
        f"  {vs}  {vp}{err}"
    )


HEADER = (
    f"  {'':52s} {'req/s':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'CPU us':>8s}  "
    f"{'vs bare':>6s}  {'vs MLflow':>7s}"
)


# --------------------------------------------------------------------------- throughput


def loreg_paths(names: list[str]) -> tuple[list[str], list[str]]:
    versions = [f"/api/v1/adapters/{n}/versions/1" for n in names]
    return versions, [f"/api/v1/adapters?limit={SEARCH_LIMIT}"]


def seed_mlflow(url: str, models: int, versions: int) -> list[str]:
    with httpx.Client(base_url=url + "/api/2.0/mlflow", timeout=60) as c:
        run_id = c.post("/runs/create", json={"experiment_id": "0"}).json()["run"]["info"]["run_id"]
        names = []
        for m in range(models):
            name = f"bench-{m:03d}"
            names.append(name)
            c.post(
                "/registered-models/create",
                json={"name": name, "description": f"bench adapter {m}"},
            ).raise_for_status()
            for _ in range(versions):
                c.post(
                    "/model-versions/create",
                    json={
                        "name": name,
                        "source": f"runs:/{run_id}/model",
                        "run_id": run_id,
                        "tags": [{"key": "dataset", "value": f"ds-{m % 5}"}],
                    },
                ).raise_for_status()
    return names


@dataclass
class Target:
    key: str  # "bare", "loreg", "pg1", "pg2", "mlflow"
    label: str
    port: int
    paths: dict[str, list[str]]  # "version" / "search" -> paths
    headers: dict[str, str]
    pid: int  # the server process (its CPU time, with its children's, is measured)


def throughput(args: argparse.Namespace, tmp: Path, pg_url: str | None) -> None:
    """Every server is started and filled first; then ``--rounds`` rounds each measure every
    server in turn, so a burst of load from elsewhere on the machine hits them alike; a row
    is the median round's rate and the percentiles of all its rounds' requests."""
    print(
        f"== Throughput: {args.concurrency} client tasks, each with its own keep-alive "
        f"connection; {args.rounds} rounds of {args.seconds:.0f} s per row (after "
        f"{args.warmup:.0f} s warm-up), servers interleaved; 20 adapters x 2 versions =="
    )
    targets: list[Target] = []
    with ExitStack() as stack:
        srv = stack.enter_context(loreg_server(tmp / "embedded"))
        names = seed_registry(srv.url, srv.token, tmp / "work")
        headers = {"Authorization": f"Bearer {srv.token}"}
        vpaths, spaths = loreg_paths(names)
        vbody = httpx.get(srv.url + vpaths[0], headers=headers).content
        sbody = httpx.get(srv.url + spaths[0], headers=headers).content
        print(
            f"  bodies: version {len(vbody)} bytes, search {len(sbody)} bytes "
            f"({SEARCH_LIMIT} adapters)"
        )
        bare = stack.enter_context(bare_server(tmp / "bare", vbody, sbody))
        targets.append(
            Target(
                "bare",
                "bare FastAPI app, loreg's body",
                bare.port,
                {"version": vpaths, "search": spaths},
                headers,
                bare.proc.pid,
            )
        )
        targets.append(
            Target(
                "loreg",
                "loreg, embedded default (SQLite, 1 process)",
                srv.port,
                {"version": vpaths, "search": spaths},
                headers,
                srv.proc.pid,
            )
        )
        if pg_url is not None:
            for workers in (1, 2):
                pg = stack.enter_context(
                    loreg_server(
                        tmp / f"pg-{workers}",
                        database_url=pg_url.replace("/bench", f"/tp{workers}"),
                        workers=workers,
                    )
                )
                pg_names = seed_registry(pg.url, pg.token, tmp / "work")
                pv, ps = loreg_paths(pg_names)
                label = (
                    "loreg, PostgreSQL, 1 API process"
                    if workers == 1
                    else f"loreg, PostgreSQL, --workers {workers}"
                )
                targets.append(
                    Target(
                        f"pg{workers}",
                        label,
                        pg.port,
                        {"version": pv, "search": ps},
                        {"Authorization": f"Bearer {pg.token}"},
                        pg.proc.pid,
                    )
                )
        python = None if args.no_mlflow else mlflow_python()
        if python is not None:
            version = subprocess.run(
                [str(python), "-c", "import mlflow; print(mlflow.__version__)"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            ml = stack.enter_context(mlflow_server(tmp / "mlflow", python))
            models = seed_mlflow(ml.url, 20, 2)
            api = "/api/2.0/mlflow"
            targets.append(
                Target(
                    "mlflow",
                    f"MLflow {version} (--workers 1, SQLite)",
                    ml.port,
                    {
                        "version": [f"{api}/model-versions/get?name={m}&version=1" for m in models],
                        "search": [f"{api}/registered-models/search?max_results={SEARCH_LIMIT}"],
                    },
                    {},
                    ml.proc.pid,
                )
            )
        results: dict[tuple[str, str], list[LoadResult]] = {}
        for i in range(args.rounds):
            for kind in ("version", "search"):
                for t in targets:
                    r = run_load(
                        "127.0.0.1",
                        t.port,
                        t.paths[kind],
                        headers=t.headers,
                        concurrency=args.concurrency,
                        seconds=args.seconds,
                        warmup=args.warmup,
                        server_pid=t.pid,
                    )
                    results.setdefault((t.key, kind), []).append(r)
            print(
                f"  round {i + 1}/{args.rounds} done (load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    for kind, what in (("version", "GET version"), ("search", "search, 20 per page")):
        print(f"{what}:")
        print(HEADER)
        merged = {t.key: _merge(results[t.key, kind]) for t in targets}
        floor = merged["bare"].rate
        peer = merged["mlflow"].rate if "mlflow" in merged else None
        for t in targets:
            print(fmt_row(t.label, merged[t.key], floor, peer))
        lo = merged["loreg"].rate
        target = 0.5 if kind == "version" else 0.25
        per_round = [
            r.rate / b.rate
            for r, b in zip(results["loreg", kind], results["bare", kind], strict=True)
        ]
        line = (
            f"  loreg/bare {lo / floor:.2f}x (>= {target}x wanted; rounds: "
            + ", ".join(f"{x:.2f}" for x in per_round)
            + ")"
        )
        if peer:
            line += f"; loreg/MLflow {lo / peer:.1f}x (>= 5x wanted)"
        print(line)
        lo_cpu, bare_cpu = merged["loreg"].cpu_per_request, merged["bare"].cpu_per_request
        if lo_cpu and bare_cpu:
            print(
                f"  server CPU per request (all processes of the server; independent of other "
                f"load on the machine): loreg/bare {lo_cpu / bare_cpu:.2f}x, i.e. bare/loreg "
                f"{bare_cpu / lo_cpu:.2f}"
            )


def _merge(rounds: list[LoadResult]) -> LoadResult:
    """The median round's rate; the latencies and errors of every round."""
    ordered = sorted(rounds, key=lambda r: r.rate)
    middle = ordered[len(ordered) // 2]
    errors: dict[str, int] = {}
    for r in rounds:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    cpu = sum(r.server_cpu or 0.0 for r in rounds)
    return LoadResult(
        middle.requests,
        middle.seconds,
        [x for r in rounds for x in r.latencies],
        errors,
        answered=sum(r.answered for r in rounds),
        server_cpu=cpu,
    )


# --------------------------------------------------------------------------- growth


QUERIES: list[tuple[str, Callable[[random.Random, int], str]]] = [
    ("GET /healthz (no database: the floor)", lambda rnd, a: "/healthz"),
    ("resolve ns/name:tag", lambda rnd, a: f"/api/v1/resolve?ref={_public(rnd, a)}:prod"),
    (
        "resolve ns/name@N",
        lambda rnd, a: f"/api/v1/resolve?ref={_public(rnd, a)}@{rnd.randint(1, 10)}",
    ),
    ("resolve ns/name@sha256", lambda rnd, a: "/api/v1/resolve?ref=" + _by_digest(rnd, a)),
    (
        "show version",
        lambda rnd, a: f"/api/v1/adapters/{_public(rnd, a)}/versions/{rnd.randint(1, 10)}",
    ),
    ("version list", lambda rnd, a: f"/api/v1/adapters/{_public(rnd, a)}/versions?limit=20"),
    ("search (no filter)", lambda rnd, a: "/api/v1/adapters?limit=20"),
    ("search base", lambda rnd, a: f"/api/v1/adapters?limit=20&base=org/base-{rnd.randint(1, 8)}"),
    (
        "search target",
        lambda rnd, a: (
            "/api/v1/adapters?limit=20&target=" + rnd.choice(["q_proj", "gate_proj", "o_proj"])
        ),
    ),
    ("search rank", lambda rnd, a: "/api/v1/adapters?limit=20&rank_min=32&rank_max=64"),
    ("search label (common)", lambda rnd, a: "/api/v1/adapters?limit=20&label=stage=prod"),
    (
        "search label (rare)",
        lambda rnd, a: (
            "/api/v1/adapters?limit=20&label=dataset="
            + _growth.dataset(rnd.randint(1, min(a, _growth.DATASETS)))
        ),
    ),
    ("search text (common)", lambda rnd, a: "/api/v1/adapters?limit=20&text=support"),
    (
        "search text (rare)",
        lambda rnd, a: "/api/v1/adapters?limit=20&text=" + _growth.adapter_name(rnd.randint(1, a)),
    ),
]


def _public(rnd: random.Random, adapters: int) -> str:
    k = rnd.randrange(2, adapters + 1, 2)  # even: public
    return f"{_growth.namespace_of(k)}/{_growth.adapter_name(k)}"


def _by_digest(rnd: random.Random, adapters: int) -> str:
    import hashlib

    k = rnd.randrange(2, adapters + 1, 2)
    v = rnd.randint(1, _growth.VERSIONS_PER_ADAPTER)
    digest = hashlib.sha256(f"version{k}-{v}".encode()).hexdigest()
    return f"{_growth.namespace_of(k)}/{_growth.adapter_name(k)}@sha256:{digest}"


@contextmanager
def _engine(url: str) -> Iterator[Any]:
    from loreg.db.session import create_engine_for

    engine = create_engine_for(url)
    try:
        yield engine
    finally:
        engine.dispose()


def growth(args: argparse.Namespace, tmp: Path, pg_url: str) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"\n== Growth: PostgreSQL, {', '.join(f'{s:,}' for s in sizes)} versions "
        f"({_growth.VERSIONS_PER_ADAPTER} per adapter); median of {args.requests} "
        "sequential requests through the API, as a member of 10 of the 1,000 teams =="
    )
    url = pg_url.replace("/bench", "/growth")
    latency: dict[str, list[float]] = {name: [] for name, _ in QUERIES}
    db_time: dict[str, list[float]] = {name: [] for name, _ in QUERIES}
    plans: dict[str, list[tuple[str, str]]] = {}
    with loreg_server(tmp / "growth", database_url=url) as srv, _engine(url) as engine:
        admin = {"Authorization": f"Bearer {srv.token}"}
        r = httpx.post(
            srv.url + "/api/v1/users",
            headers=admin,
            timeout=60,
            json={"name": "reader", "token_scope": "read"},
        )
        r.raise_for_status()
        token = r.json()["token"]["token"]
        with engine.begin() as conn:
            user_id = conn.exec_driver_sql(
                "SELECT id FROM users WHERE name = 'reader'"
            ).scalar_one()

        def execute(sql: str) -> None:
            with engine.begin() as conn:  # the driver's own cursor: no placeholders here
                conn.connection.dbapi_connection.cursor().execute(sql)

        _growth.seed_once(execute, user_id)
        done = 0
        headers = {"Authorization": f"Bearer {token}"}
        client = httpx.Client(base_url=srv.url, headers=headers, timeout=60)
        for size in sizes:
            adapters = size // _growth.VERSIONS_PER_ADAPTER
            t0 = time.perf_counter()
            step = 20_000
            for lo in range(done, adapters, step):
                _growth.seed_adapters(execute, lo, min(adapters, lo + step))
            seeded = time.perf_counter() - t0
            t0 = time.perf_counter()
            with engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql("VACUUM ANALYZE")
                conn.exec_driver_sql("CHECKPOINT")
            vacuum = time.perf_counter() - t0
            done = adapters
            counts = _counts(engine)
            print(
                f"  {size:>9,} versions: seeded {seeded:.1f} s, VACUUM ANALYZE {vacuum:.1f} s "
                f"({counts})",
                flush=True,
            )
            rnd = random.Random(size)
            paths = {
                name: [make(rnd, adapters) for _ in range(args.requests)] for name, make in QUERIES
            }
            times: dict[str, list[float]] = {name: [] for name, _ in QUERIES}
            for name, _ in QUERIES:  # warm up
                for path in paths[name][:3]:
                    _check(client.get(path), path)
            for i in range(args.requests):  # round-robin: load spikes hit every query alike
                for name, _ in QUERIES:
                    path = paths[name][i]
                    t = time.perf_counter()
                    resp = client.get(path)
                    times[name].append(time.perf_counter() - t)
                    _check(resp, path)
            for name, _ in QUERIES:
                latency[name].append(statistics.median(times[name]))
            runs = [_plans(engine, token, adapters, seed) for seed in range(3)]
            for name, _ in QUERIES:
                db_time[name].append(
                    statistics.median(
                        sum(_execution_ms(plan) for _sql, plan in run[name][1]) for run in runs
                    )
                )
            plans = {label: statements for label, statements in runs[-1].values()}
        client.close()
    head = "".join(f"{s:>10,}" for s in sizes)
    print(f"\n  median ms per request{'':16s}{head}   last/first")
    flat = True
    for name, _ in QUERIES:
        values = latency[name]
        ratio = values[-1] / values[0]
        flat &= ratio <= 2
        print(f"  {name:38s}" + "".join(f"{v * 1000:10.2f}" for v in values) + f"   {ratio:6.2f}x")
    print(f"  every query within 2x from {sizes[0]:,} to {sizes[-1]:,}: {'yes' if flat else 'NO'}")
    print(f"\n  database time per request, ms{'':8s}{head}   last/first")
    print("  (sum of the EXPLAIN ANALYZE execution times of its statements, median of 3)")
    for name, _ in QUERIES:
        values = db_time[name]
        ratio = values[-1] / values[0] if values[0] else float("nan")
        print(f"  {name:38s}" + "".join(f"{v:10.2f}" for v in values) + f"   {ratio:6.2f}x")
    print(
        f"\n== Plans at {sizes[-1]:,} versions: every SQL statement of each request "
        "(EXPLAIN ANALYZE) =="
    )
    scans = []
    for name, statements in plans.items():
        print(f"\n-- {name}: {len(statements)} statement(s)")
        for sql, plan in statements:
            print("   " + " ".join(sql.split())[:200])
            for line in plan.splitlines():
                print("     " + line)
            scans += [(name, line) for line in _large_scans(plan)]
    print(f"\n  sequential scans reading more than {LARGE_SCAN:,} rows: {len(scans)}")
    for name, line in scans:
        print(f"    {name}: {line}")


#: a sequential scan that reads more rows than this is a scan of a large table
LARGE_SCAN = 1000


def _large_scans(plan: str) -> list[str]:
    """The plan's sequential scans that read more than ``LARGE_SCAN`` rows in all."""
    out = []
    lines = plan.splitlines()
    for i, line in enumerate(lines):
        if "Seq Scan" not in line:
            continue
        m = re.search(r"actual rows=(\d+) loops=(\d+)", line)
        rows = int(m.group(1)) * int(m.group(2)) if m else 0
        for follow in lines[i + 1 : i + 4]:
            r = re.search(r"Rows Removed by Filter: (\d+)", follow)
            if r:
                rows += int(r.group(1)) * (int(m.group(2)) if m else 1)
        if rows > LARGE_SCAN:
            out.append(f"{line.strip()} ({rows:,} rows read)")
    return out


def _counts(engine: Any) -> str:
    with engine.connect() as conn:
        out = []
        for table in (
            "adapters",
            "adapter_versions",
            "version_files",
            "version_labels",
            "version_target_modules",
            "tags",
            "blobs",
        ):
            n = conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
            out.append(f"{table} {n:,}")
    return ", ".join(out)


def _check(resp: httpx.Response, path: str) -> None:
    if resp.status_code != 200:
        raise RuntimeError(f"{path}: {resp.status_code} {resp.text[:300]}")


def _plans(
    engine: Any, token: str, adapters: int, seed: int
) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Run each query's service call in this process, capture its SQL and EXPLAIN ANALYZE
    it: query name -> (its path, [(statement, plan)])."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from loreg.services import accounts, reads
    from loreg.services import adapters as adapter_svc

    captured: list[tuple[str, Any]] = []

    def capture(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        captured.append((statement, parameters))

    rnd = random.Random(1000 + seed)
    out: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for name, make in QUERIES:
        path = make(rnd, adapters)
        with Session(engine) as session:
            actor = accounts.authenticate(session, token)
            event.listen(engine, "before_cursor_execute", capture)
            try:
                _call(session, actor, path, reads, adapter_svc)
            finally:
                event.remove(engine, "before_cursor_execute", capture)
            statements, captured[:] = list(captured), []
            explained = []
            for sql, params in statements:
                plan = (
                    session.connection()
                    .exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql, params)
                    .scalars()
                    .all()
                )
                explained.append((sql, "\n".join(plan)))
            out[name] = (f"{name} ({path.removeprefix('/api/v1')})", explained)
    return out


def _execution_ms(plan: str) -> float:
    m = re.search(r"Execution Time: ([0-9.]+) ms", plan)
    return float(m.group(1)) if m else 0.0


def _call(session: Any, actor: Any, path: str, reads: Any, adapter_svc: Any) -> None:
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(path)
    if parts.path == "/healthz":
        return
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    segs = parts.path.removeprefix("/api/v1/").split("/")
    if segs[0] == "resolve":
        reads.resolve(session, actor, q["ref"])
    elif len(segs) == 5:
        reads.show_version(session, actor, segs[1], segs[2], segs[4])
    elif len(segs) == 4:
        reads.list_versions(session, actor, segs[1], segs[2], limit=int(q.get("limit", 50)))
    else:
        labels = parse_qs(parts.query).get("label", [])
        filters = adapter_svc.SearchFilters(
            base=q.get("base"),
            target=q.get("target"),
            rank_min=int(q["rank_min"]) if "rank_min" in q else None,
            rank_max=int(q["rank_max"]) if "rank_max" in q else None,
            labels=labels,
            text=q.get("text"),
        )
        adapter_svc.search_views(session, actor, filters, limit=int(q.get("limit", 50)))


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per throughput row and round")
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--sizes", default="1000,100000,1000000", help="versions, comma-separated")
    ap.add_argument("--requests", type=int, default=100, help="per query and size")
    ap.add_argument("--no-mlflow", action="store_true")
    ap.add_argument("--no-growth", action="store_true")
    ap.add_argument("--no-throughput", action="store_true")
    args = ap.parse_args()

    started = time.perf_counter()
    print(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="loreg-bench-api-") as tmp_name:
        tmp = Path(tmp_name)
        with postgres() as pg_url:
            import psycopg

            admin_url = pg_url.replace("postgresql+psycopg", "postgresql").replace(
                "/bench", "/postgres"
            )
            with psycopg.connect(admin_url, autocommit=True) as conn:
                for db in ("tp1", "tp2", "growth"):
                    conn.execute(f"CREATE DATABASE {db}")
            if not args.no_throughput:
                throughput(args, tmp, pg_url)
            if not args.no_growth:
                growth(args, tmp, pg_url)
    print(
        f"\nwhole run: {time.perf_counter() - started:.0f} s; load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )


if __name__ == "__main__":
    main()
