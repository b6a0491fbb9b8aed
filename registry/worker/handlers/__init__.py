"""Job handlers by type: each takes a ``JobContext`` and returns an ``Outcome``."""

from __future__ import annotations

from collections.abc import Callable

from registry.worker.context import JobContext, Outcome
from registry.worker.handlers import merge, validate

HANDLERS: dict[str, Callable[[JobContext], Outcome]] = {
    "merge": merge.run,
    "validate": validate.run,
}
