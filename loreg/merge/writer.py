"""A streaming safetensors writer: header first, then tensor bytes in order.

The safetensors library can only serialise tensors that are all in memory at once. A merge
knows every output tensor's name, dtype and shape before it reads a single weight, so it can
write the header first and then append each tensor's bytes as they are produced, holding one
tensor (or one chunk of one) at a time. Files are written under ``NAME.incomplete`` and
renamed when complete; each file's sha256 is computed while writing, so callers learn the
digests without reading the output again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from loreg.errors import InvalidInput, LoregError
from loreg.units import GB

BytesLike: TypeAlias = bytes | bytearray | memoryview

INCOMPLETE = ".incomplete"
_PARALLEL_HASH_BYTES = 1 << 20
INDEX_NAME = "model.safetensors.index.json"
#: Hugging Face's default shard size (``save_pretrained``'s ``max_shard_size="5GB"``).
DEFAULT_SHARD_BYTES = 5 * GB

# bytes per element of every safetensors dtype loreg writes or copies
DTYPE_SIZES: dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}


class WriterError(LoregError):
    """The writer was fed bytes that do not match the header it promised."""

    code = "writer_error"


@dataclass(frozen=True)
class TensorSpec:
    """One output tensor as the header will describe it."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        try:
            size = DTYPE_SIZES[self.dtype]
        except KeyError:
            raise InvalidInput(f"unsupported safetensors dtype {self.dtype!r}") from None
        return size * math.prod(self.shape)


@dataclass(frozen=True)
class OutputFile:
    """A finished output file: its path relative to the output folder, size and sha256."""

    path: str
    size: int
    sha256: str


def build_header(specs: Sequence[TensorSpec], metadata: dict[str, str] | None = None) -> bytes:
    """The 8-byte length plus JSON header for ``specs`` laid out contiguously in order.

    The JSON is padded with spaces to a multiple of 8 bytes, as the safetensors library does,
    so the data section starts aligned.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for spec in specs:
        if spec.name in header:
            raise InvalidInput(f"duplicate tensor name {spec.name!r}")
        end = offset + spec.nbytes
        header[spec.name] = {
            "dtype": spec.dtype,
            "shape": list(spec.shape),
            "data_offsets": [offset, end],
        }
        offset = end
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


class _HashingFile:
    """A binary file opened for writing that hashes everything written to it.

    Large writes are hashed on a helper thread while the bytes go to the kernel (both
    release the GIL), so hashing costs no wall time where a second core is free.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in close()/abort()
        self._sha = hashlib.sha256()
        self._pool: ThreadPoolExecutor | None = None
        self.size = 0

    def write(self, data: BytesLike) -> None:
        view = memoryview(data).cast("B")
        pending = None
        if len(view) >= _PARALLEL_HASH_BYTES:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="loreg-sha256")
            pending = self._pool.submit(self._sha.update, view)
        else:
            self._sha.update(view)
        try:
            self._write_all(view)
        finally:
            if pending is not None:
                pending.result()

    def _write_all(self, view: memoryview) -> None:
        while view:
            n = self._file.write(view)
            if n is None:  # pragma: no cover - only for non-blocking files
                continue
            view = view[n:]
            self.size += n

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def close(self, *, fsync: bool) -> str:
        self._shutdown()
        if fsync:
            os.fsync(self._file.fileno())
        self._file.close()
        return self._sha.hexdigest()

    def abort(self) -> None:
        self._shutdown()
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


class SafetensorsStreamWriter:
    """Writes one safetensors file at ``path`` whose tensors are known up front.

    Feed each tensor's bytes with :meth:`write`, in the order of ``specs``, in one or more
    chunks; :meth:`finish` checks that everything arrived, renames ``path.incomplete`` to
    ``path`` and returns the file's size and sha256. :meth:`abort` removes the partial file.
    """

    def __init__(
        self,
        path: Path,
        specs: Sequence[TensorSpec],
        *,
        metadata: dict[str, str] | None = None,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        self._specs = list(specs)
        self._fsync = fsync
        header = build_header(self._specs, metadata)
        self._tmp = self.path.with_name(self.path.name + INCOMPLETE)
        self._file = _HashingFile(self._tmp)
        self._index = 0
        self._remaining = self._specs[0].nbytes if self._specs else 0
        try:
            self._file.write(header)
            self._skip_empty()
        except BaseException:
            self._file.abort()
            raise

    def _skip_empty(self) -> None:
        while self._index < len(self._specs) and self._remaining == 0:
            self._index += 1
            if self._index < len(self._specs):
                self._remaining = self._specs[self._index].nbytes

    @property
    def expected(self) -> str | None:
        """The name of the tensor whose bytes are due next, or None when all arrived."""
        return self._specs[self._index].name if self._index < len(self._specs) else None

    def write(self, name: str, data: BytesLike) -> None:
        view = memoryview(data).cast("B")
        if name != self.expected:
            raise WriterError(f"expected bytes of {self.expected!r}, got {name!r}")
        if len(view) > self._remaining:
            raise WriterError(f"too many bytes for tensor {name!r}")
        self._file.write(view)
        self._remaining -= len(view)
        self._skip_empty()

    def finish(self) -> OutputFile:
        if self.expected is not None:
            raise WriterError(f"tensor {self.expected!r} is incomplete")
        digest = self._file.close(fsync=self._fsync)
        size = self._file.size
        os.replace(self._tmp, self.path)
        return OutputFile(path=self.path.name, size=size, sha256=digest)

    def abort(self) -> None:
        self._file.abort()


def plan_shards(specs: Sequence[TensorSpec], max_shard_bytes: int) -> list[list[TensorSpec]]:
    """Split ``specs`` in order into shards of at most ``max_shard_bytes`` tensor bytes.

    A tensor larger than the limit gets a shard of its own (as ``save_pretrained`` does).
    """
    if max_shard_bytes <= 0:
        raise InvalidInput("max_shard_bytes must be positive")
    shards: list[list[TensorSpec]] = []
    current: list[TensorSpec] = []
    size = 0
    for spec in specs:
        if current and size + spec.nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(spec)
        size += spec.nbytes
    if current or not shards:
        shards.append(current)
    return shards


def shard_names(count: int, prefix: str = "model") -> list[str]:
    """``model.safetensors`` alone, else ``model-00001-of-0000N.safetensors`` as HF names them."""
    if count == 1:
        return [f"{prefix}.safetensors"]
    return [f"{prefix}-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


class ShardedSafetensorsWriter:
    """Writes ``specs`` into ``out_dir`` as one file or as shards plus an index JSON.

    Bytes arrive through :meth:`write` in the order of ``specs``; a shard is finished (and
    renamed into place) as soon as its last tensor is complete, the next one is opened lazily,
    so only one file is open at a time.
    """

    def __init__(
        self,
        out_dir: Path,
        specs: Sequence[TensorSpec],
        *,
        max_shard_bytes: int = DEFAULT_SHARD_BYTES,
        metadata: dict[str, str] | None = None,
        prefix: str = "model",
        fsync: bool = False,
    ) -> None:
        self.out_dir = Path(out_dir)
        self._metadata = {"format": "pt", **(metadata or {})}
        self._fsync = fsync
        self._shards = plan_shards(specs, max_shard_bytes)
        self._names = shard_names(len(self._shards), prefix)
        self._shard = 0
        self._writer: SafetensorsStreamWriter | None = None
        self.files: list[OutputFile] = []
        self._total = sum(s.nbytes for s in specs)
        self._weight_map = {
            spec.name: name
            for name, shard in zip(self._names, self._shards, strict=True)
            for spec in shard
        }

    @property
    def total_bytes(self) -> int:
        """Tensor bytes across all shards (the ``total_size`` of the index)."""
        return self._total

    def _current(self) -> SafetensorsStreamWriter:
        if self._writer is None:
            if self._shard >= len(self._shards):
                raise WriterError("all shards are already complete")
            self._writer = SafetensorsStreamWriter(
                self.out_dir / self._names[self._shard],
                self._shards[self._shard],
                metadata=self._metadata,
                fsync=self._fsync,
            )
        return self._writer

    def _roll(self) -> None:
        while self._writer is not None and self._writer.expected is None:
            self.files.append(self._writer.finish())
            self._writer = None
            self._shard += 1
            if self._shard < len(self._shards) and not self._shards[self._shard]:
                self._current()

    def write(self, name: str, data: BytesLike) -> None:
        self._current().write(name, data)
        self._roll()

    def finish(self) -> list[OutputFile]:
        """Finish the last shard, write the index when sharded; returns all files written."""
        if self._shard < len(self._shards):
            self._current()
            self._roll()
        if self._shard < len(self._shards):
            raise WriterError("not all tensors were written")
        if len(self._shards) > 1:
            index = {"metadata": {"total_size": self._total}, "weight_map": self._weight_map}
            self.files.append(write_bytes_atomic(self.out_dir / INDEX_NAME, json_bytes(index)))
        return list(self.files)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


def json_bytes(obj: Any) -> bytes:
    """JSON as ``save_pretrained`` writes it: indented, sorted keys, trailing newline."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def write_bytes_atomic(path: Path, data: bytes, *, fsync: bool = False) -> OutputFile:
    """Write ``data`` to ``path`` via ``path.incomplete`` and a rename; returns its digest."""
    tmp = path.with_name(path.name + INCOMPLETE)
    f = _HashingFile(tmp)
    try:
        f.write(data)
        digest = f.close(fsync=fsync)
    except BaseException:
        f.abort()
        raise
    os.replace(tmp, path)
    return OutputFile(path=path.name, size=len(data), sha256=digest)


def adapter_writer(
    out_dir: Path, specs: Sequence[TensorSpec], *, metadata: dict[str, str] | None = None
) -> ShardedSafetensorsWriter:
    """One unsharded ``adapter_model.safetensors``: the file PEFT loads an adapter from."""
    return ShardedSafetensorsWriter(
        out_dir, specs, max_shard_bytes=1 << 62, metadata=metadata, prefix="adapter_model"
    )
