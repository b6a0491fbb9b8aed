"""``loreg serve``: the API (uvicorn), migrations, first admin, the in-process worker.

``--workers N`` (PostgreSQL only) runs N API processes on the one listening socket, under
uvicorn's supervisor (which restarts a process that dies). This process does everything
that must happen once: migrations, the first admin, removing interrupted uploads' temp
files, and the in-process job worker with its housekeeping (webhook deliveries, daily
GC); the N processes only serve requests. See docs/scaling.md.
"""

from __future__ import annotations

import errno
import functools
import json
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import click

from loreg.cli import extras
from loreg.cli.common import info, json_option, settings
from loreg.errors import LoregError
from loreg.logging import configure_logging

if TYPE_CHECKING:
    from fastapi import FastAPI

    from loreg.config import Settings

#: The most API processes ``--workers`` starts (far more than cores is only overhead).
MAX_WORKERS = 64


def _start_worker(s: Any) -> Any:
    """Start the in-process worker; returns something with ``stop()`` (or ``None``)."""
    import loreg.worker as worker_pkg

    for name in ("start_in_process", "start_background", "start"):
        fn = getattr(worker_pkg, name, None)
        if callable(fn):
            return fn(s)
    info("warning: this build has no in-process worker; run `loreg worker` beside it")
    return None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--no-worker", is_flag=True, help="Do not run a worker in this process.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, MAX_WORKERS),
    help="API processes sharing the port (PostgreSQL only; the job worker and "
    "housekeeping still run once).",
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@json_option
def serve(
    host: str, port: int, no_worker: bool, workers: int, log_level: str, as_json: bool
) -> None:
    """Run the registry (SQLite + a local blob folder under LOREG_HOME when unconfigured)."""
    extras.require("server", "serve")
    import uvicorn

    from loreg.api.app import create_app
    from loreg.api.bootstrap import credentials_path, ensure_admin
    from loreg.db.migrate import upgrade

    s = settings()
    if workers > 1 and not _is_postgres(s.effective_database_url):
        raise click.UsageError(
            f"--workers {workers} needs PostgreSQL: the embedded SQLite database serves one "
            "process (one writer at a time). Drop --workers, or set LOREG_DATABASE_URL="
            "postgresql+psycopg://USER@HOST/DB (docs/scaling.md)"
        )
    configure_logging(log_level)
    sock = bind(host, port)  # first: a busy port is a clear error before any other work
    s.home.mkdir(parents=True, exist_ok=True)
    upgrade(s.effective_database_url)
    public_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if workers > 1:
        _serve_processes(s, sock, host, port, public_host, workers, no_worker, log_level, as_json)
        return
    app = create_app(s)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)

    worker = None if no_worker else _start_worker(s)
    announced = threading.Event()

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if not server.started:
            return
        bound = port
        for srv in getattr(server, "servers", []) or []:
            for sock in getattr(srv, "sockets", []) or []:
                bound = int(sock.getsockname()[1])
                break
        url = f"http://{public_host}:{bound}"
        token = ensure_admin(s, app.state.sessionmaker, url=url)
        doc = {
            "url": url,
            "credentials": str(credentials_path(s)),
            "first_start": token is not None,
            "worker": worker is not None,
            "database": _redact(s.effective_database_url),
            "storage": s.effective_storage_url,
        }
        if as_json:
            click.echo(json.dumps(doc))
        else:
            click.echo(f"loreg is serving at {url}")
        announced.set()

    threading.Thread(target=announce, name="announce", daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        stop = getattr(worker, "stop", None)
        if callable(stop):
            stop()
    if not announced.is_set() and not server.started:
        raise click.ClickException(f"could not start serving on {host}:{port}")


def _is_postgres(url: str) -> bool:
    from sqlalchemy.engine import make_url

    return make_url(url).get_backend_name() == "postgresql"


def process_app(s: Settings, log_level: str) -> FastAPI:
    """The app of one of ``--workers N`` processes (called in each new process)."""
    from loreg.api.app import create_app

    configure_logging(log_level)
    return create_app(s, sweep_uploads=False)


def _serve_processes(
    s: Settings,
    sock: socket.socket,
    host: str,
    port: int,
    public_host: str,
    workers: int,
    no_worker: bool,
    log_level: str,
    as_json: bool,
) -> None:
    """N API processes on ``sock``; this one supervises them and runs what runs once."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from loreg.api.app import remove_upload_leftovers
    from loreg.api.bootstrap import credentials_path, ensure_admin
    from loreg.db.session import create_engine_for, make_sessionmaker
    from loreg.storage import open_store

    remove_upload_leftovers(open_store(s))
    config = uvicorn.Config(
        functools.partial(process_app, s, log_level),
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    supervisor = Multiprocess(config, sockets=[sock])
    bound = int(sock.getsockname()[1])
    url = f"http://{public_host}:{bound}"
    engine = create_engine_for(s.effective_database_url)
    worker = None

    def announce() -> None:
        if not _wait_serving(public_host, bound, supervisor.should_exit):
            return
        token = ensure_admin(s, make_sessionmaker(engine), url=url)
        doc = {
            "url": url,
            "credentials": str(credentials_path(s)),
            "first_start": token is not None,
            "worker": worker is not None,
            "workers": workers,
            "database": _redact(s.effective_database_url),
            "storage": s.effective_storage_url,
        }
        click.echo(
            json.dumps(doc) if as_json else f"loreg is serving at {url} ({workers} API processes)"
        )

    try:
        worker = None if no_worker else _start_worker(s)
        threading.Thread(target=announce, name="announce", daemon=True).start()
        supervisor.run()
    finally:
        sock.close()
        stop = getattr(worker, "stop", None)
        if callable(stop):
            stop()
        engine.dispose()


def _wait_serving(host: str, port: int, stopping: threading.Event, timeout: float = 120) -> bool:
    """Whether ``GET /healthz`` answers on ``host:port`` before ``timeout`` (or a stop)."""
    import httpx

    deadline = time.monotonic() + timeout
    while not stopping.is_set() and time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{host}:{port}/healthz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


class CannotListen(LoregError):
    """``loreg serve`` cannot listen where it was asked to."""

    code = "cannot_listen"


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port``, or an error that says what to do instead."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CannotListen(
                f"port {port} on {host} is already in use (another `loreg serve`?): stop "
                f"that, or pass --port N and point the clients at it (LOREG_URL=http://"
                f"{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:N)"
            ) from None
        if exc.errno == errno.EACCES:
            raise CannotListen(
                f"no permission to listen on port {port}: pass --port with a number above 1023"
            ) from None
        raise CannotListen(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): pass --host 127.0.0.1 "
            "(this machine only) or --host 0.0.0.0 (every interface)"
        ) from None
    return sock


def _redact(url: str) -> str:
    """A database URL without its password, for printing."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url


COMMANDS = [serve]
