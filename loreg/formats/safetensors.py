"""Strict safetensors header parsing from a file or from ranged reads.

The API learns an adapter's ranks, shapes and dtypes from the header alone (a ranged read
from the blob store), so the header is the one part of an untrusted upload we interpret
before anything else: every rule of the format is checked here and each violation is a
``SafetensorsError`` that names the file and, where there is one, the tensor.

Layout: 8 bytes little-endian u64 ``N``, then ``N`` bytes of UTF-8 JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``,
then the tensor bytes; offsets are relative to the first byte after the header.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import IO, Any, ClassVar

from loreg.errors import InvalidInput
from loreg.formats.types import SafetensorsHeader, TensorInfo

MAX_HEADER_BYTES = 100 * 1024 * 1024
"""Largest header accepted (the reference implementation's limit)."""

DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
"""Bits per element of every dtype the safetensors format defines."""

DTYPE_SIZES: dict[str, int] = {k: v // 8 for k, v in DTYPE_BITS.items() if v % 8 == 0}
"""Bytes per element of the whole-byte dtypes (what the merge engine computes with)."""

FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64", "F8_E5M2", "F8_E4M3"})

TORCH_DTYPE_NAMES: dict[str, str] = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "I32": "int32",
    "U32": "uint32",
    "I64": "int64",
    "U64": "uint64",
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "C64": "complex64",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E8M0": "float8_e8m0fnu",
}
"""safetensors dtype -> ``torch`` attribute name (``getattr(torch, ...)``); no torch import here."""

ReadRange = Callable[[int, int], bytes]


class SafetensorsError(InvalidInput):
    """A safetensors file breaks the format; ``details`` names the file and tensor."""

    code: ClassVar[str] = "invalid_safetensors"

    def __init__(self, message: str, *, file: str, tensor: str | None = None) -> None:
        where = f"{file}: " if tensor is None else f"{file}: tensor {tensor!r}: "
        super().__init__(where + message, details={"file": file, "tensor": tensor})
        self.file = file
        self.tensor = tensor


class TruncatedSafetensors(SafetensorsError):
    code: ClassVar[str] = "safetensors_truncated"


class SafetensorsHeaderTooLarge(SafetensorsError):
    code: ClassVar[str] = "safetensors_header_too_large"


class MalformedSafetensorsHeader(SafetensorsError):
    code: ClassVar[str] = "safetensors_malformed_header"


class UnknownDType(SafetensorsError):
    code: ClassVar[str] = "safetensors_unknown_dtype"


class BadTensorOffsets(SafetensorsError):
    code: ClassVar[str] = "safetensors_bad_offsets"


class TooManyTensors(SafetensorsError):
    """More tensors than the caller accepts: every later step costs work per tensor."""

    code: ClassVar[str] = "safetensors_too_many_tensors"


def dtype_nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    """Byte length of a tensor; raises ``ValueError`` for sub-byte dtypes not ending on a byte."""
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8:
        raise ValueError(f"{dtype} tensor of shape {list(shape)} does not fill whole bytes")
    return bits // 8


def _reader(
    source: IO[bytes] | ReadRange, name: str, size: int | None
) -> tuple[ReadRange, int | None]:
    if callable(source) and not hasattr(source, "read"):
        return source, size
    f: Any = source
    if size is None:
        try:
            size = f.seek(0, 2)
        except (OSError, ValueError) as e:
            raise SafetensorsError(f"cannot determine the file size: {e}", file=name) from None

    def read_range(start: int, length: int) -> bytes:
        f.seek(start)
        data: bytes = f.read(length)
        return data

    return read_range, size


def read_header(
    source: IO[bytes] | ReadRange,
    *,
    name: str,
    size: int | None = None,
    max_tensors: int | None = None,
) -> SafetensorsHeader:
    """Parse and strictly validate the header of a safetensors file.

    ``source`` is a binary file object (read/seek) or ``read_range(start, length) -> bytes``
    (a ranged read from the blob store). ``size`` is the full file size; it is found by
    seeking for a file object. Without it (a callable and no size) the checks that need the
    file's end (truncation, trailing bytes) are skipped and ``file_size`` is what the
    header implies. Reads at most ``8 + header length`` bytes.

    ``max_tensors`` bounds the entries a header may list (``TooManyTensors`` beyond it),
    checked by a byte count before the JSON is parsed and exactly after, so a hostile
    header costs one scan of its bytes, not the work of describing every tensor.
    """
    read_range, size = _reader(source, name, size)
    raw = _header_bytes(read_range, size, name)
    data_start = 8 + len(raw)
    if max_tensors is not None:
        # Every plain-spelled entry has this key, and the quoted token cannot occur inside a
        # JSON string, so the count bounds the entries from above (escaped spellings are
        # caught by the exact count after parsing).
        _check_tensor_count(raw.count(b'"data_offsets"'), max_tensors, name)
    doc, metadata = _parse_json(raw, name)
    if max_tensors is not None:
        _check_tensor_count(len(doc), max_tensors, name)
    entries = sorted(
        (_parse_entry(tname, entry, name) for tname, entry in doc.items()),
        key=lambda e: (e[0], e[1]),
    )
    total = _contiguous_length(entries, name)
    if size is not None:
        _check_file_end(size, data_start, total, entries, name)
    tensors = {
        tname: TensorInfo(
            name=tname, dtype=dtype, shape=shape, start=data_start + b, end=data_start + e
        )
        for b, e, tname, dtype, shape in entries
    }
    return SafetensorsHeader(
        tensors=tensors, metadata=metadata, data_start=data_start, file_size=data_start + total
    )


_Entry = tuple[int, int, str, str, tuple[int, ...]]  # begin, end, name, dtype, shape


def _header_bytes(read_range: ReadRange, size: int | None, name: str) -> bytes:
    """The JSON header's bytes, after checking the length prefix against the file."""
    if size is not None and size < 8:
        raise TruncatedSafetensors(
            f"file is {size} bytes, shorter than the 8-byte header length", file=name
        )
    prefix = read_range(0, 8)
    if len(prefix) < 8:
        raise TruncatedSafetensors(
            f"file ends after {len(prefix)} bytes, before the 8-byte header length", file=name
        )
    (header_len,) = struct.unpack("<Q", prefix)
    if header_len > MAX_HEADER_BYTES:
        raise SafetensorsHeaderTooLarge(
            f"header claims {header_len} bytes, over the limit of {MAX_HEADER_BYTES}"
            " (not a safetensors file, or a corrupted one)",
            file=name,
        )
    if header_len < 2:
        raise MalformedSafetensorsHeader(f"header length {header_len} is too small", file=name)
    if size is not None and 8 + header_len > size:
        raise TruncatedSafetensors(
            f"header claims {header_len} bytes but the file has only {size - 8} after the"
            " length prefix",
            file=name,
        )
    raw = read_range(8, header_len)
    if len(raw) < header_len:
        raise TruncatedSafetensors(
            f"file ends inside the header ({len(raw)} of {header_len} bytes)", file=name
        )
    if not raw.startswith(b"{"):
        raise MalformedSafetensorsHeader("header does not start with '{'", file=name)
    return raw


def _parse_json(raw: bytes, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The header's tensor entries and its ``__metadata__``."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise MalformedSafetensorsHeader(f"header is not UTF-8: {e}", file=name) from None
    except json.JSONDecodeError as e:
        raise MalformedSafetensorsHeader(f"header is not valid JSON: {e}", file=name) from None
    except RecursionError:
        raise MalformedSafetensorsHeader("header JSON is nested too deeply", file=name) from None
    if not isinstance(doc, dict):
        raise MalformedSafetensorsHeader("header is not a JSON object", file=name)
    metadata: dict[str, str] = {}
    raw_meta = doc.pop("__metadata__", None)
    if raw_meta is not None:
        if not isinstance(raw_meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw_meta.items()
        ):
            raise MalformedSafetensorsHeader("__metadata__ must map strings to strings", file=name)
        metadata = dict(raw_meta)
    return doc, metadata


def _contiguous_length(entries: list[_Entry], name: str) -> int:
    """The data length the sorted entries cover, refusing overlaps and gaps."""
    expected = 0
    for begin, end, tname, _dtype, _shape in entries:
        if begin < expected:
            raise BadTensorOffsets(
                f"data_offsets [{begin}, {end}] overlap the previous tensor (ends at {expected})",
                file=name,
                tensor=tname,
            )
        if begin > expected:
            raise BadTensorOffsets(
                f"data_offsets [{begin}, {end}] leave a gap of {begin - expected} bytes after"
                f" the previous tensor (ends at {expected})",
                file=name,
                tensor=tname,
            )
        expected = end
    return expected


def _check_file_end(
    size: int, data_start: int, total: int, entries: list[_Entry], name: str
) -> None:
    """The tensors must end exactly where the file does."""
    available = size - data_start
    if total > available:
        raise TruncatedSafetensors(
            f"tensor data ends at byte {data_start + total} but the file has {size} bytes"
            " (truncated file, or offsets out of bounds)",
            file=name,
            tensor=entries[-1][2] if entries else None,
        )
    if total < available:
        raise BadTensorOffsets(
            f"{available - total} bytes after the last tensor (the header accounts for"
            f" {total} of {available} data bytes)",
            file=name,
        )


def _check_tensor_count(count: int, max_tensors: int, name: str) -> None:
    if count > max_tensors:
        raise TooManyTensors(
            f"the header lists {count} tensors, over the limit of {max_tensors} tensors per "
            "file (ask the registry's operator to raise it if the adapter is genuine)",
            file=name,
        )


def _parse_entry(tname: str, entry: Any, file: str) -> _Entry:
    if not isinstance(entry, dict):
        raise MalformedSafetensorsHeader("entry is not a JSON object", file=file, tensor=tname)
    extra = set(entry) - {"dtype", "shape", "data_offsets"}
    if extra:
        raise MalformedSafetensorsHeader(
            f"unexpected fields {sorted(extra)}", file=file, tensor=tname
        )
    dtype = entry.get("dtype")
    shape = entry.get("shape")
    offsets = entry.get("data_offsets")
    if not isinstance(dtype, str):
        raise MalformedSafetensorsHeader("missing or non-string dtype", file=file, tensor=tname)
    if dtype not in DTYPE_BITS:
        raise UnknownDType(
            f"unknown dtype {dtype!r} (known: {', '.join(sorted(DTYPE_BITS))})",
            file=file,
            tensor=tname,
        )
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise MalformedSafetensorsHeader(
            f"shape must be a list of non-negative integers, got {shape!r:.80}",
            file=file,
            tensor=tname,
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
    ):
        raise MalformedSafetensorsHeader(
            f"data_offsets must be two non-negative integers, got {offsets!r:.80}",
            file=file,
            tensor=tname,
        )
    begin, end = offsets
    if end < begin:
        raise BadTensorOffsets(
            f"data_offsets [{begin}, {end}] end before they begin", file=file, tensor=tname
        )
    shape_t = tuple(shape)
    try:
        nbytes = dtype_nbytes(dtype, shape_t)
    except ValueError as e:
        raise BadTensorOffsets(str(e), file=file, tensor=tname) from None
    if end - begin != nbytes:
        raise BadTensorOffsets(
            f"data_offsets [{begin}, {end}] span {end - begin} bytes but shape {list(shape_t)}"
            f" x {dtype} needs {nbytes}",
            file=file,
            tensor=tname,
        )
    return begin, end, tname, dtype, shape_t


def read_header_file(path: str | Any, *, name: str | None = None) -> SafetensorsHeader:
    """``read_header`` on a path on disk (``name`` defaults to the path)."""
    with open(path, "rb") as f:
        return read_header(f, name=name or str(path))
