"""The threads around a merge: one reads the base, one writes the output.

The reader pulls each tensor's bytes in plan order with ranged reads (hashing them for the
base fingerprint as they pass) into a bounded queue: whole tensors for the ones the merge
computes, 16 MiB chunks from a small pool of reused buffers for the ones it copies. The
writer streams output bytes into the shards while the next tensor is read and merged. Both
queues are short, so memory stays at a few tensors in flight whatever the model's size.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from loreg.merge.plan import TensorPlan
from loreg.merge.sources import COPY_CHUNK, BaseCheckpoint, pread_into, read_tensor, tensor_bytes
from loreg.merge.writer import BytesLike, ShardedSafetensorsWriter

_QUEUE_DEPTH = 2  # items between stages: bounds memory to a few tensors in flight


class BaseReader(threading.Thread):
    """Reads the base in plan order into a bounded queue, hashing for the fingerprint."""

    def __init__(
        self,
        base: BaseCheckpoint,
        plans: Sequence[TensorPlan],
        *,
        hash_bytes: bool,
        pin: bool,
    ) -> None:
        super().__init__(name="loreg-merge-reader", daemon=True)
        self.base = base
        self.plans = plans
        self.hash_bytes = hash_bytes
        self.pin = pin
        self.items: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(_QUEUE_DEPTH + 2):
            self.free.put(bytearray(COPY_CHUNK))
        self.stop = threading.Event()
        self.records: list[tuple[str, str, tuple[int, ...], str]] = []

    def _put(self, item: tuple[Any, ...]) -> None:
        while not self.stop.is_set():
            try:
                self.items.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _buffer(self) -> bytearray:
        while not self.stop.is_set():
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stopped

    def run(self) -> None:
        fds: dict[str, int] = {}
        try:
            for rel in self.base.headers:
                fds[rel] = os.open(self.base.path / rel, os.O_RDONLY)
                if hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(fds[rel], 0, 0, os.POSIX_FADV_SEQUENTIAL)
            for plan in self.plans:
                info = plan.info
                sha = hashlib.sha256() if self.hash_bytes else None
                if plan.computed:
                    tensor = read_tensor(fds[plan.file], info, pin=self.pin)
                    if sha is not None:
                        sha.update(tensor_bytes(tensor))
                        self._record(plan, sha.hexdigest())
                    self._put(("tensor", plan, tensor))
                    continue
                pos, end = info.start, info.end
                if pos == end:
                    if sha is not None:
                        self._record(plan, sha.hexdigest())
                    self._put(("chunk", plan, None, 0, True))
                while pos < end:
                    buf = self._buffer()
                    n = min(len(buf), end - pos)
                    view = memoryview(buf)[:n]
                    pread_into(fds[plan.file], pos, view)
                    if sha is not None:
                        sha.update(view)
                    pos += n
                    if pos == end and sha is not None:
                        self._record(plan, sha.hexdigest())
                    self._put(("chunk", plan, buf, n, pos == end))
            self._put(("done",))
        except _Stopped:
            pass
        except BaseException as e:  # handed to the consumer, which re-raises it
            with contextlib.suppress(_Stopped):
                self._put(("error", e))
        finally:
            for fd in fds.values():
                os.close(fd)

    def _record(self, plan: TensorPlan, hexdigest: str) -> None:
        self.records.append((plan.info.name, plan.info.dtype, plan.info.shape, hexdigest))

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while True:
            item = self.items.get()
            if item[0] == "done":
                return
            if item[0] == "error":
                raise item[1]
            yield item

    def halt(self) -> None:
        self.stop.set()
        self.join(timeout=10)


class WriterThread(threading.Thread):
    """Writes (and hashes) output bytes while the next tensor is being read and merged."""

    def __init__(self, writer: ShardedSafetensorsWriter) -> None:
        super().__init__(name="loreg-merge-writer", daemon=True)
        self.writer = writer
        self.items: queue.Queue[tuple[str, BytesLike, Callable[[], None] | None] | None] = (
            queue.Queue(maxsize=_QUEUE_DEPTH)
        )
        self.error: BaseException | None = None

    def submit(self, name: str, data: BytesLike, release: Callable[[], None] | None = None) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.items.put((name, data, release), timeout=0.1)
                return
            except queue.Full:
                continue

    def run(self) -> None:
        while (item := self.items.get()) is not None:
            name, data, release = item
            try:
                if self.error is None:
                    self.writer.write(name, data)
            except BaseException as e:
                self.error = e
            finally:
                if release is not None:
                    release()

    def close(self) -> None:
        """Wait until everything submitted is written; re-raise a write error."""
        self.items.put(None)
        self.join()
        if self.error is not None:
            raise self.error


class _Stopped(Exception):
    pass
