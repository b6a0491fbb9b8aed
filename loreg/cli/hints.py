"""What to do next, appended to an API error's message for the command that got it.

The registry's messages say what went wrong; a command knows what its user can run next
(``loreg ls`` to find a name, ``--deleted`` to see deleted versions). ``hinted`` adds that
sentence by HTTP status and re-raises, so ``loreg.cli.common.run`` still maps the error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from loreg.client.errors import ApiError

NOT_FOUND = 404
FORBIDDEN = 403
CONFLICT = 409


@contextmanager
def hinted(by_status: dict[int, str]) -> Iterator[None]:
    """Append ``by_status[error.status]`` to an API error raised inside the block."""
    try:
        yield
    except ApiError as exc:
        hint = by_status.get(exc.status)
        if hint and hint not in exc.message:
            exc.message = f"{exc.message.rstrip('.')}: {hint}"
            exc.args = (exc.message,)
        raise
