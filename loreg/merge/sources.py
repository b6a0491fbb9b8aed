"""Reading base checkpoints and adapters one tensor at a time, and staging output folders.

Tensor bytes are read with ``preadv`` into buffers the merge owns, not through ``mmap``:
mapped file pages count towards a process's resident set, so a merge that mmapped a 70B
checkpoint would look (and be accounted, by cgroups) as large as the model. With ranged
reads the resident set stays at the few tensors in flight.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import torch

from loreg.errors import Conflict, Incompatible, InvalidInput
from loreg.formats.base import read_headers
from loreg.formats.compat import adapter_findings
from loreg.formats.peft import read_adapter
from loreg.formats.types import AdapterDescription, SafetensorsHeader, TensorInfo
from loreg.merge.options import OUTPUT_DTYPES
from loreg.merge.writer import (
    INCOMPLETE,
    OutputFile,
    SafetensorsStreamWriter,
    ShardedSafetensorsWriter,
    TensorSpec,
)

TORCH_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
ST_DTYPES: dict[torch.dtype, str] = {v: k for k, v in TORCH_DTYPES.items()}
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})
#: config.json's name of each output dtype (``torch_dtype`` / ``dtype``).
CONFIG_DTYPE_NAMES: dict[str, str] = {st: name for name, st in OUTPUT_DTYPES.items()}

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
COPY_CHUNK = 16 * 1024 * 1024


_M_MMAP_THRESHOLD = -3
_heap_configured = False


def return_large_frees_to_os() -> None:
    """Serve allocations of 1 MiB and more with their own mappings (glibc ``mallopt``).

    glibc raises its mmap threshold after the first large ``free`` (up to 32 MiB), after
    which tensor-sized buffers come from heap arenas that it rarely gives back: a merge's
    resident set then creeps with the model's size (measured: +14% from 1 GB to 3 GB). A fixed
    threshold makes every tensor buffer its own mapping, unmapped when freed. Process-wide
    and idempotent; a no-op where glibc is not the allocator.
    """
    global _heap_configured
    if _heap_configured:
        return
    _heap_configured = True
    try:
        import ctypes.util

        name = ctypes.util.find_library("c")
        if name:
            ctypes.CDLL(name).mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        pass


def output_dtype(dtype: str | None) -> str | None:
    """``float16`` / ``bfloat16`` / ``float32`` (or None) as a safetensors dtype string."""
    if dtype is None:
        return None
    try:
        return OUTPUT_DTYPES[dtype]
    except KeyError:
        raise InvalidInput(
            f"unknown dtype {dtype!r}; choose one of {', '.join(OUTPUT_DTYPES)}"
        ) from None


def torch_dtype(st_dtype: str) -> torch.dtype:
    try:
        return TORCH_DTYPES[st_dtype]
    except KeyError:
        raise Incompatible(f"tensors of dtype {st_dtype} are not supported") from None


def pread_into(fd: int, offset: int, buffer: memoryview) -> None:
    """Fill ``buffer`` from ``fd`` at ``offset`` (looping over short reads)."""
    view = buffer.cast("B")
    while view:
        n = os.preadv(fd, [view], offset)
        if n <= 0:
            raise Incompatible("file ended before the tensor did (truncated checkpoint?)")
        view = view[n:]
        offset += n


def byte_view(tensor: torch.Tensor) -> memoryview:
    """A writable view of a contiguous CPU tensor's bytes, without a copy and without numpy.

    numpy is not a dependency (torch's CPU wheel does not bring it), so ``Tensor.numpy()``
    is off limits. The view is a ctypes array over the tensor's memory that holds a
    reference to the tensor, so the memory lives as long as any view of it does.
    """
    if tensor.device.type != "cpu" or not tensor.is_contiguous():
        raise ValueError("byte_view needs a contiguous CPU tensor")
    nbytes = tensor.numel() * tensor.element_size()
    if nbytes == 0:
        return memoryview(bytearray())
    array = (ctypes.c_ubyte * nbytes).from_address(tensor.data_ptr())
    array._owner = tensor  # type: ignore[attr-defined]  # keeps the memory alive
    return memoryview(array).cast("B")


def read_tensor(fd: int, info: TensorInfo, *, pin: bool = False) -> torch.Tensor:
    """One tensor's bytes from an open file as a tensor of its own dtype and shape."""
    raw = torch.empty(info.nbytes, dtype=torch.uint8, pin_memory=pin)
    if info.nbytes:
        pread_into(fd, info.start, byte_view(raw))
    return raw.view(torch_dtype(info.dtype)).reshape(info.shape)


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a CPU tensor (made contiguous if it is not), without a copy."""
    return byte_view(tensor.contiguous())


def save_tensors(
    tensors: Mapping[str, torch.Tensor], path: Path, *, metadata: dict[str, str] | None = None
) -> OutputFile:
    """Write in-memory tensors as one safetensors file (via ``PATH.incomplete``).

    What ``safetensors.torch.save_file`` does, without the numpy it needs for it.
    """
    specs = []
    for name, t in sorted(tensors.items()):
        if t.dtype not in ST_DTYPES:
            raise InvalidInput(f"tensor {name!r}: dtype {t.dtype} has no safetensors name")
        specs.append(TensorSpec(name, ST_DTYPES[t.dtype], tuple(t.shape)))
    writer = SafetensorsStreamWriter(Path(path), specs, metadata=metadata)
    try:
        for spec in specs:
            if spec.nbytes:
                writer.write(spec.name, tensor_bytes(tensors[spec.name].detach().cpu()))
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


@dataclass
class BaseCheckpoint:
    """A base model folder's safetensors files, parsed headers, and tensors in read order."""

    path: Path
    headers: dict[str, SafetensorsHeader]  # by file name relative to ``path``
    order: list[tuple[str, TensorInfo]] = field(default_factory=list)

    @property
    def tensors(self) -> dict[str, TensorInfo]:
        return {info.name: info for _, info in self.order}

    @property
    def total_bytes(self) -> int:
        return sum(info.nbytes for _, info in self.order)


def open_base(base_dir: Path) -> BaseCheckpoint:
    """Find and parse a base checkpoint's safetensors files (``read_headers``'s rule).

    Tensors are ordered by file, then by offset, so reading them is one sequential pass.
    """
    base_dir = Path(base_dir)
    headers = read_headers(base_dir)
    order: list[tuple[str, TensorInfo]] = []
    seen: set[str] = set()
    for rel, header in sorted(headers.items()):
        for info in sorted(header.tensors.values(), key=lambda i: i.start):
            if info.name in seen:
                raise InvalidInput(f"tensor {info.name!r} appears in more than one base shard")
            seen.add(info.name)
            order.append((rel, info))
    return BaseCheckpoint(path=base_dir, headers=headers, order=order)


class AdapterSource:
    """A PEFT adapter folder: its description plus on-demand reads of single tensors."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.desc: AdapterDescription = read_adapter(self.path)
        self.weights = self.path / "adapter_model.safetensors"
        self._fd: int | None = None

    def require_applicable(self, what: str) -> None:
        """Refuse (``Incompatible``) an adapter with tensors or config fields loreg would not
        apply: the same findings validate and push report."""
        findings = adapter_findings(self.desc)
        if findings:
            lines = "\n".join(f"  error[{f.code}] {f.message}" for f in findings[:20])
            raise Incompatible(
                f"{self.path}: loreg cannot {what} this adapter without leaving part of it out;"
                f" nothing was written:\n{lines}",
                details={"problems": [f.to_dict() for f in findings]},
            )

    def tensor(self, key: str) -> torch.Tensor:
        if self._fd is None:
            self._fd = os.open(self.weights, os.O_RDONLY)
        try:
            info = self.desc.tensors[key]
        except KeyError:
            raise Incompatible(f"{self.path}: no tensor {key!r} in the adapter") from None
        return read_tensor(self._fd, info)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> AdapterSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def is_weight_file(name: str) -> bool:
    return name.endswith(WEIGHT_SUFFIXES) or name.endswith(".index.json")


def copy_file_hashed(src: Path, dst: Path) -> OutputFile:
    """Copy ``src`` to ``dst`` via ``dst.incomplete``, hashing the bytes as they pass."""
    tmp = dst.with_name(dst.name + INCOMPLETE)
    sha = hashlib.sha256()
    size = 0
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(COPY_CHUNK):
                sha.update(chunk)
                fout.write(chunk)
                size += len(chunk)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.replace(tmp, dst)
    return OutputFile(path=dst.name, size=size, sha256=sha.hexdigest())


class StagedDir:
    """An output folder built under ``OUT.incomplete`` and renamed to ``OUT`` when complete.

    ``OUT`` may exist only as an empty folder (a worker's scratch directory); anything else
    is a ``Conflict`` before any work starts. On failure the staging folder is removed and
    ``OUT`` is left as it was.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and (not self.out_dir.is_dir() or any(self.out_dir.iterdir())):
            raise Conflict(f"output {self.out_dir} already exists and is not an empty folder")
        self.path = self.out_dir.with_name(self.out_dir.name + INCOMPLETE)
        if self.path.exists():
            shutil.rmtree(self.path)  # left by a crashed run: ours by name, never finished
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.mkdir()

    def commit(self) -> Path:
        if self.out_dir.is_dir():
            self.out_dir.rmdir()  # empty, checked above
        os.replace(self.path, self.out_dir)
        return self.out_dir

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def abandon(staged: StagedDir | None, writer: ShardedSafetensorsWriter | None) -> None:
    """Undo a failed output: abort the writer's open shard, then drop the staging folder.

    Either may be ``None`` (the failure came before it was created)."""
    if writer is not None:
        writer.abort()
    if staged is not None:
        staged.discard()
