"""Bridges between the async request/response world and the synchronous blob store.

Uploads: the request body arrives as an async iterator of chunks; ``BlobStore.put`` wants a
blocking file-like object. ``stream_to_sync`` runs the consumer in a worker thread that reads
from a small bounded queue fed by the event loop, so memory stays at a few chunks whatever the
body size, and a body larger than the limit is cut off as soon as it crosses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, BinaryIO, TypeVar, cast

from registry.errors import InvalidInput, TooLarge

T = TypeVar("T")

_QUEUE_CHUNKS = 4
_EOF = b""


class _Aborted(Exception):
    """Raised inside the consumer thread when the producer gave up (client went away)."""


class _PipeReader(io.RawIOBase):
    """A blocking reader over an asyncio queue, for use from one worker thread only."""

    def __init__(self, queue: asyncio.Queue[bytes], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._queue = queue
        self._loop = loop
        self._buffer = b""
        self._eof = False
        self.aborted: BaseException | None = None
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bytes:
        if self.aborted is not None:
            raise _Aborted(str(self.aborted))
        future = asyncio.run_coroutine_threadsafe(self._queue.get(), self._loop)
        chunk = future.result()
        if self.aborted is not None:
            raise _Aborted(str(self.aborted))
        return chunk

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._buffer and not self._eof:
            chunk = self._next_chunk()
            if chunk == _EOF:
                self._eof = True
            else:
                self._buffer = chunk
        if not self._buffer:
            return 0
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        self.bytes_read += n
        return n


async def stream_to_sync(
    chunks: AsyncIterator[bytes],
    consume: Callable[[BinaryIO], T],
    *,
    max_bytes: int,
    expected_length: int | None = None,
) -> T:
    """Feed ``chunks`` to ``consume(reader)`` running in a worker thread; return its result.

    Raises ``TooLarge`` as soon as more than ``max_bytes`` arrived, ``InvalidInput`` when the
    body is shorter or longer than ``expected_length`` (a truncated upload), and whatever
    ``consume`` raised. On any failure the consumer sees an error from ``read`` (never a clean
    end of file), so a store never completes a partial blob.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=_QUEUE_CHUNKS)
    reader = _PipeReader(queue, loop)
    buffered = io.BufferedReader(reader, buffer_size=1024 * 1024)
    consumer = asyncio.ensure_future(
        asyncio.to_thread(consume, cast(BinaryIO, buffered))
    )

    def _abort(exc: BaseException) -> None:
        reader.aborted = exc
        # Wake a consumer waiting on an empty queue; a full queue means it is not waiting.
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(_EOF)

    async def _put(chunk: bytes) -> bool:
        """Put a chunk; False when the consumer finished (failed) before taking it."""
        if consumer.done():
            return False
        putter = asyncio.ensure_future(queue.put(chunk))
        done, _ = await asyncio.wait({putter, consumer}, return_when=asyncio.FIRST_COMPLETED)
        if putter in done:
            return True
        putter.cancel()
        return False

    received = 0
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            received += len(chunk)
            if received > max_bytes:
                raise TooLarge(
                    f"body is larger than the limit of {max_bytes} bytes",
                    details={"limit": max_bytes},
                )
            if expected_length is not None and received > expected_length:
                raise InvalidInput("body is longer than its Content-Length")
            if not await _put(chunk):
                break
        else:
            if expected_length is not None and received != expected_length:
                raise InvalidInput(
                    "upload incomplete: body is shorter than its Content-Length",
                    details={"expected": expected_length, "received": received},
                )
            await _put(_EOF)
    except BaseException as exc:
        _abort(exc)
        with contextlib.suppress(BaseException):
            await asyncio.shield(consumer)
        raise
    return await consumer


def iter_file(
    handle: BinaryIO, *, length: int | None, chunk_size: int = 1024 * 1024
) -> Iterator[bytes]:
    """Yield up to ``length`` bytes (all when None) of ``handle`` in chunks; close it at the end."""
    try:
        remaining = length
        while remaining is None or remaining > 0:
            want = chunk_size if remaining is None else min(chunk_size, remaining)
            data = handle.read(want)
            if not data:
                break
            if remaining is not None:
                remaining -= len(data)
            yield data
    finally:
        handle.close()

