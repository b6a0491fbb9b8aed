"""Strict safetensors header parsing, checked against files written by safetensors itself."""

from __future__ import annotations

import io
import json
import random
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from loreg.errors import InvalidInput
from loreg.formats.safetensors import (
    DTYPE_SIZES,
    MAX_HEADER_BYTES,
    BadTensorOffsets,
    MalformedSafetensorsHeader,
    SafetensorsError,
    SafetensorsHeaderTooLarge,
    TruncatedSafetensors,
    UnknownDType,
    read_header,
)


def _write(path: Path) -> Path:
    torch.manual_seed(0)
    save_file(
        {
            "a.weight": torch.randn(4, 3),
            "b.half": torch.randn(5).half(),
            "c.bf16": torch.randn(2, 2, 2).bfloat16(),
            "d.ids": torch.arange(7),
            "e.mask": torch.tensor([True, False]),
            "f.scalar": torch.tensor(1.5),
            "g.f8": torch.randn(3).to(torch.float8_e4m3fn),
        },
        str(path),
        metadata={"format": "pt"},
    )
    return path


def _raw(header: dict, data: bytes = b"", *, pad: int = 0) -> bytes:
    doc = json.dumps(header).encode() + b" " * pad
    return struct.pack("<Q", len(doc)) + doc + data


@pytest.fixture
def st_file(tmp_path: Path) -> Path:
    return _write(tmp_path / "t.safetensors")


def test_matches_safetensors_own_reading(st_file: Path) -> None:
    with open(st_file, "rb") as f:
        header = read_header(f, name="t.safetensors")
    assert header.metadata == {"format": "pt"}
    assert header.file_size == st_file.stat().st_size
    raw = st_file.read_bytes()
    with safe_open(str(st_file), "pt") as f:
        assert set(f.keys()) == set(header.tensors)
        for name in header.tensors:
            t = f.get_tensor(name)
            info = header.tensors[name]
            assert info.shape == tuple(t.shape)
            assert info.nbytes == t.numel() * t.element_size()
            # The absolute offsets point at exactly the tensor's bytes.
            blob = raw[info.start : info.end]
            assert blob == t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
    assert header.tensors["c.bf16"].dtype == "BF16"
    assert header.tensors["f.scalar"].shape == ()
    assert header.tensors["g.f8"].dtype == "F8_E4M3"
    assert DTYPE_SIZES["BF16"] == 2 and DTYPE_SIZES["F32"] == 4


def test_ranged_reads_equal_file_reads(st_file: Path) -> None:
    raw = st_file.read_bytes()
    calls: list[tuple[int, int]] = []

    def read_range(start: int, length: int) -> bytes:
        calls.append((start, length))
        return raw[start : start + length]

    a = read_header(read_range, name="x", size=len(raw))
    b = read_header(io.BytesIO(raw), name="x")
    c = read_header(read_range, name="x")  # no size: end-of-file checks skipped
    assert a == b == c
    # Only the prefix and the header are read, never the tensor data.
    assert all(start + length <= a.data_start for start, length in calls)


@pytest.mark.parametrize("cut", [0, 3, 8, 20, -1, -9])
def test_truncated_file(st_file: Path, cut: int) -> None:
    raw = st_file.read_bytes()
    data = raw[:cut]
    with pytest.raises(TruncatedSafetensors) as e:
        read_header(io.BytesIO(data), name="trunc.safetensors")
    assert "trunc.safetensors" in str(e.value)
    assert isinstance(e.value, InvalidInput)
    assert e.value.details["file"] == "trunc.safetensors"


def test_truncated_in_data_names_last_tensor() -> None:
    raw = _raw({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 10)
    with pytest.raises(TruncatedSafetensors) as e:
        read_header(io.BytesIO(raw), name="f")
    assert e.value.tensor == "x"
    assert "26" in str(e.value) or "file has" in str(e.value)


def test_header_length_claims_huge_size() -> None:
    raw = struct.pack("<Q", 2**63) + b"{}"
    with pytest.raises(SafetensorsHeaderTooLarge) as e:
        read_header(io.BytesIO(raw), name="huge")
    assert str(MAX_HEADER_BYTES) in str(e.value)


def test_tensor_claims_huge_shape() -> None:
    raw = _raw(
        {"big": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}}, b"\0" * 16
    )
    with pytest.raises(BadTensorOffsets) as e:
        read_header(io.BytesIO(raw), name="f")
    assert e.value.tensor == "big"
    assert "needs" in str(e.value)


def test_tensor_claims_huge_offsets() -> None:
    n = 2**62
    raw = _raw({"big": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}, b"\0" * 16)
    with pytest.raises(TruncatedSafetensors) as e:
        read_header(io.BytesIO(raw), name="f")
    assert e.value.tensor == "big"


@pytest.mark.parametrize(
    ("header", "data", "error", "tensor"),
    [
        ({"x": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, 4, UnknownDType, "x"),
        ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, 4, BadTensorOffsets, "x"),
        ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, 4, BadTensorOffsets, "x"),
        (
            {
                "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                "y": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
            },
            12,
            BadTensorOffsets,
            "y",
        ),
        (
            {
                "x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "y": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
            },
            8,
            BadTensorOffsets,
            "y",
        ),
        ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, 6, BadTensorOffsets, None),
        (
            {"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}},
            4,
            MalformedSafetensorsHeader,
            "x",
        ),
        ({"x": {"dtype": "F32", "shape": [1]}}, 4, MalformedSafetensorsHeader, "x"),
        (
            {"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "z": 1}},
            4,
            MalformedSafetensorsHeader,
            "x",
        ),
        ({"x": [1, 2]}, 0, MalformedSafetensorsHeader, "x"),
        ({"__metadata__": {"a": 1}}, 0, MalformedSafetensorsHeader, None),
    ],
)
def test_invalid_headers(
    header: dict, data: int, error: type[SafetensorsError], tensor: str | None
) -> None:
    with pytest.raises(error) as e:
        read_header(io.BytesIO(_raw(header, b"\0" * data)), name="bad.safetensors")
    assert e.value.tensor == tensor
    assert "bad.safetensors" in str(e.value)
    if tensor:
        assert repr(tensor) in str(e.value)


@pytest.mark.parametrize("doc", [b"[1,2]", b"{not json", b"\xff\xfe{}", b'{"a": 1', b"  {}"])
def test_not_a_json_object(doc: bytes) -> None:
    with pytest.raises(MalformedSafetensorsHeader):
        read_header(io.BytesIO(struct.pack("<Q", len(doc)) + doc), name="f")


def test_header_padding_and_empty_file_are_fine() -> None:
    h = read_header(io.BytesIO(_raw({}, pad=6)), name="f")
    assert h.tensors == {} and h.file_size == h.data_start


def test_random_corruption_never_crashes(st_file: Path) -> None:
    raw = st_file.read_bytes()
    hlen = struct.unpack("<Q", raw[:8])[0]
    rng = random.Random(0)
    outcomes = set()
    for _ in range(300):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(0, 8 + hlen)
            data[pos] = rng.randrange(256)
        try:
            read_header(io.BytesIO(bytes(data)), name="fuzz")
            outcomes.add("ok")
        except SafetensorsError as e:
            assert "fuzz" in e.message
            outcomes.add(type(e).__name__)
    assert len(outcomes) > 2
