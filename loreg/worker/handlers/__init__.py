"""Job handlers by type: each takes a ``JobContext`` and returns an ``Outcome``."""

from __future__ import annotations

from collections.abc import Callable

from loreg.worker.context import JobContext, Outcome
from loreg.worker.handlers import combine, export, merge, validate

HANDLERS: dict[str, Callable[[JobContext], Outcome]] = {
    "combine": combine.run,
    "export": export.run,
    "merge": merge.run,
    "validate": validate.run,
}
