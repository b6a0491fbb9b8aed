"""A load generator for HTTP/1.1 GETs that costs the client as little CPU as possible.

One asyncio process, ``concurrency`` tasks, each with its own keep-alive connection
(a shared connection pool costs the client milliseconds of CPU per request on two cores
and caps every server near the same rate, which hides the differences being measured).
The protocol is spoken by hand: write the request line and headers, read the head up to
the blank line, then ``Content-Length`` bytes or the chunks. Every server measured gets
exactly the same client.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float] = field(repr=False)
    errors: dict[str, int]
    #: every answered request, warm-up included (to share out CPU time measured outside)
    answered: int = 0
    #: server CPU seconds over the whole run (warm-up included), when measured
    server_cpu: float | None = None

    @property
    def cpu_per_request(self) -> float | None:
        if self.server_cpu is None or not self.answered:
            return None
        return self.server_cpu / self.answered

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


class HttpError(Exception):
    pass


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HttpError(f"bad status line {lines[0][:80]!r}")
    status = int(parts[1])
    length = None
    chunked = False
    keep_alive = parts[0] == b"HTTP/1.1"
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection":
            keep_alive = value.lower() != b"close"
    if chunked:
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers are sent here
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        return status, bytes(body), keep_alive
    if length is None:
        if status in (204, 304) or 100 <= status < 200:
            return status, b"", keep_alive
        return status, await reader.read(), False
    return status, await reader.readexactly(length), keep_alive


def request_bytes(host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Accept: application/json",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _worker(
    host: str,
    port: int,
    requests: Sequence[bytes],
    start: int,
    stop_at: Callable[[], bool],
    measure_from: float,
    latencies: list[float],
    errors: dict[str, int],
    counter: list[int],
    check: Callable[[int, bytes], bool],
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    i = start
    try:
        while not stop_at():
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            req = requests[i % len(requests)]
            i += 1
            t0 = time.perf_counter()
            try:
                writer.write(req)
                status, body, keep = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, HttpError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                writer.close()
                writer = None
                continue
            t1 = time.perf_counter()
            counter[1] += 1
            if t0 >= measure_from:
                if check(status, body):
                    latencies.append(t1 - t0)
                    counter[0] += 1
                else:
                    key = f"HTTP {status}"
                    errors[key] = errors.get(key, 0) + 1
            if not keep:
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


async def _run(
    host: str,
    port: int,
    requests: Sequence[bytes],
    concurrency: int,
    seconds: float,
    warmup: float,
    check: Callable[[int, bytes], bool],
) -> LoadResult:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = [0, 0]
    begin = time.perf_counter()
    measure_from = begin + warmup
    end = measure_from + seconds
    tasks = [
        asyncio.create_task(
            _worker(
                host,
                port,
                requests,
                i * 7,
                lambda: time.perf_counter() >= end,
                measure_from,
                latencies,
                errors,
                counter,
                check,
            )
        )
        for i in range(concurrency)
    ]
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - measure_from
    return LoadResult(counter[0], elapsed, latencies, errors, answered=counter[1])


def run_load(
    host: str,
    port: int,
    paths: Sequence[str],
    *,
    headers: dict[str, str],
    concurrency: int = 32,
    seconds: float = 10.0,
    warmup: float = 2.0,
    check: Callable[[int, bytes], bool] | None = None,
    server_pid: int | None = None,
) -> LoadResult:
    """GET ``paths`` round-robin for ``warmup + seconds``; counts only after the warm-up.
    With ``server_pid``, also the CPU time that process and its descendants spent."""
    reqs = [request_bytes(host, port, p, headers) for p in paths]
    ok = check or (lambda status, body: status == 200)
    try:
        import uvloop

        runner: Callable[..., LoadResult] = uvloop.run
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        runner = asyncio.run
    before = tree_cpu_seconds(server_pid) if server_pid else None
    result = runner(_run(host, port, reqs, concurrency, seconds, warmup, ok))
    if server_pid and before is not None:
        result.server_cpu = tree_cpu_seconds(server_pid) - before
    return result


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process and all its live descendants (Linux)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo.extend(child for child, ppid in parent.items() if ppid == p)
    return total
