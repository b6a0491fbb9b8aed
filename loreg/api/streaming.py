"""Bridges between the async request/response world and the synchronous blob store.

Uploads: the request body arrives as an async iterator of chunks; ``BlobStore.put`` wants a
blocking file-like object. ``stream_to_sync`` runs the consumer in a worker thread that reads
from a pipe fed by the event loop and bounded in bytes, so memory stays at a few MiB whatever
the body size, and a body larger than the limit is cut off as soon as it crosses it.

A body arrives in thousands of small chunks, so the hand-over is cheap per chunk: the loop
appends under a lock and notifies; it only awaits (one future) when the pipe is full, and the
reader copies every chunk it has into the caller's buffer at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, BinaryIO, TypeVar, cast

from loreg.errors import InvalidInput, TooLarge

T = TypeVar("T")

#: Bytes the event loop may queue ahead of the reading thread.
_PIPE_BYTES = 4 * 1024 * 1024
#: Buffer of the ``BufferedReader`` the consumer gets (small reads; large ones bypass it).
_READ_BUFFER = 1024 * 1024


class _Aborted(Exception):
    """Raised inside the consumer thread when the producer gave up (client went away)."""


class _Pipe(io.RawIOBase):
    """Chunks from the event loop to one reading thread, at most ``limit`` bytes queued."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = _PIPE_BYTES) -> None:
        super().__init__()
        self._loop = loop
        self._limit = limit
        self._cond = threading.Condition(threading.Lock())
        self._chunks: collections.deque[memoryview] = collections.deque()
        self._queued = 0  # bytes in ``_chunks``
        self._eof = False
        self._space: asyncio.Future[None] | None = None  # the loop waits for room
        self.aborted: BaseException | None = None
        self.bytes_read = 0

    # --- event loop side ---------------------------------------------------------------------

    def feed(self, chunk: bytes) -> asyncio.Future[None] | None:
        """Queue ``chunk``; a future to await before the next one when the pipe is full."""
        with self._cond:
            self._chunks.append(memoryview(chunk))
            self._queued += len(chunk)
            self._cond.notify()
            if self._queued < self._limit:
                return None
            self._space = self._loop.create_future()
            return self._space

    def finish(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify()

    def abort(self, exc: BaseException) -> None:
        with self._cond:
            self.aborted = exc
            self._cond.notify()

    # --- reading thread side -----------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        with self._cond:
            while not self._chunks and not self._eof and self.aborted is None:
                self._cond.wait()
            if self.aborted is not None:
                raise _Aborted(str(self.aborted))
            taken: list[memoryview] = []
            room = len(view)
            while self._chunks and room:
                chunk = self._chunks[0]
                if len(chunk) <= room:
                    taken.append(self._chunks.popleft())
                    room -= len(chunk)
                else:
                    taken.append(chunk[:room])
                    self._chunks[0] = chunk[room:]
                    room = 0
            n = len(view) - room
            self._queued -= n
            space = None
            if self._space is not None and self._queued <= self._limit // 2:
                space, self._space = self._space, None
        if space is not None:
            self._loop.call_soon_threadsafe(_wake, space)
        pos = 0
        for chunk in taken:  # copy outside the lock: the loop keeps feeding meanwhile
            view[pos : pos + len(chunk)] = chunk
            pos += len(chunk)
        self.bytes_read += n
        return n


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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
    pipe = _Pipe(loop)
    buffered = io.BufferedReader(pipe, buffer_size=_READ_BUFFER)
    consumer = asyncio.ensure_future(asyncio.to_thread(consume, cast(BinaryIO, buffered)))

    async def _room(space: asyncio.Future[None]) -> bool:
        """Wait until the pipe has room; False when the consumer finished (failed) first."""
        waiters: set[asyncio.Future[Any]] = {space, consumer}
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if space in done:
            return True
        space.cancel()
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
            if consumer.done():
                break
            space = pipe.feed(chunk)
            if space is not None and not await _room(space):
                break
        else:
            if expected_length is not None and received != expected_length:
                raise InvalidInput(
                    "upload incomplete: body is shorter than its Content-Length",
                    details={"expected": expected_length, "received": received},
                )
            pipe.finish()
    except BaseException as exc:
        pipe.abort(exc)
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
