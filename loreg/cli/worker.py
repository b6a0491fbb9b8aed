"""``loreg worker``: claim and run jobs (validate, merge, export, combine) from the queue."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import click

from loreg.cli import extras
from loreg.cli.common import settings
from loreg.logging import configure_logging


@click.command()
@click.option(
    "--device",
    type=click.Choice(["auto", "cuda", "cpu"]),
    default=None,
    help="Where merges compute (default: LOREG_WORKER_DEVICE, else auto: CUDA when available).",
)
@click.option(
    "--once", is_flag=True, help="Run the jobs queued now, then exit (instead of waiting for more)."
)
def worker(device: str | None, once: bool) -> None:
    """Run a job worker against the configured database and blob store.

    Logs one JSON line per event on stderr. SIGTERM/SIGINT finish by handing the running
    job back to the queue.
    """
    extras.require("server", "worker")
    from loreg.worker.loop import Worker

    configure_logging("info")  # JSON lines for every logger; loreg.worker's own below
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("loreg.worker")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    w = Worker(settings(), device=device)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        w.stop()
        w.interrupt()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        w.run(once=once)
    finally:
        w.close()
