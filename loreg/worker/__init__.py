"""Job workers: claim jobs from the metadata DB, run them, publish their outputs.

``loreg worker`` runs ``Worker(settings).run()``; ``loreg serve`` calls
``start_in_process(settings)`` and keeps the handle to ``stop()`` it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loreg.config import Settings
    from loreg.worker.loop import InProcessWorker


def start_in_process(settings: Settings, **kwargs: Any) -> InProcessWorker:
    """Run a worker on a daemon thread of this process; returns a handle with ``stop()``."""
    from loreg.worker.loop import start_in_process as start

    return start(settings, **kwargs)


__all__ = ["start_in_process"]
