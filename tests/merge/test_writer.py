"""The streaming writer produces files the safetensors library reads back unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from loreg.merge.writer import (
    INDEX_NAME,
    SafetensorsStreamWriter,
    ShardedSafetensorsWriter,
    TensorSpec,
    WriterError,
    plan_shards,
    shard_names,
    write_bytes_atomic,
)

DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(3, 5, generator=g),
        "b.weight": torch.randn(7, generator=g).to(torch.float16),
        "c.bias": torch.randn(4, 2, generator=g).to(torch.bfloat16),
        "d.ids": torch.arange(5, dtype=torch.int64),
        "e.empty": torch.zeros(0, 3),
    }


def _spec(name: str, t: torch.Tensor) -> TensorSpec:
    return TensorSpec(name, DT[t.dtype], tuple(t.shape))


def _raw(t: torch.Tensor) -> memoryview:
    return t.contiguous().view(torch.uint8).numpy().data if t.numel() else memoryview(b"")


def test_single_file_roundtrip_in_chunks(tmp_path: Path) -> None:
    tensors = _tensors()
    w = SafetensorsStreamWriter(
        tmp_path / "x.safetensors", [_spec(n, t) for n, t in tensors.items()]
    )
    for name, t in tensors.items():
        raw = _raw(t)
        for i in range(0, len(raw), 3):  # odd chunk sizes on purpose
            w.write(name, raw[i : i + 3])
    assert not (tmp_path / "x.safetensors").exists()
    out = w.finish()
    data = (tmp_path / "x.safetensors").read_bytes()
    assert out.size == len(data)
    assert out.sha256 == hashlib.sha256(data).hexdigest()
    loaded = load_file(tmp_path / "x.safetensors")
    for name, t in tensors.items():
        assert torch.equal(loaded[name], t), name
    assert not list(tmp_path.glob("*.incomplete"))


def test_wrong_order_and_incomplete_are_refused(tmp_path: Path) -> None:
    tensors = _tensors()
    specs = [_spec(n, t) for n, t in tensors.items()]
    w = SafetensorsStreamWriter(tmp_path / "x.safetensors", specs)
    with pytest.raises(WriterError):
        w.write("b.weight", _raw(tensors["b.weight"]))
    with pytest.raises(WriterError):
        w.finish()
    with pytest.raises(WriterError):
        w.write("a.weight", bytes(1000))
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_plan_shards_keeps_order_and_limit() -> None:
    specs = [TensorSpec(f"t{i}", "F32", (10,)) for i in range(7)]  # 40 bytes each
    shards = plan_shards(specs, 100)
    assert [len(s) for s in shards] == [2, 2, 2, 1]
    assert [s.name for shard in shards for s in shard] == [s.name for s in specs]
    big = [TensorSpec("big", "F32", (100,)), TensorSpec("small", "F32", (1,))]
    assert [len(s) for s in plan_shards(big, 100)] == [1, 1]
    assert shard_names(1) == ["model.safetensors"]
    assert shard_names(2)[1] == "model-00002-of-00002.safetensors"


def test_sharded_writer_writes_index_transformers_style(tmp_path: Path) -> None:
    tensors = {f"layer.{i}.weight": torch.randn(8, 8) for i in range(5)}
    specs = [_spec(n, t) for n, t in tensors.items()]
    w = ShardedSafetensorsWriter(tmp_path, specs, max_shard_bytes=600)
    for name, t in tensors.items():
        w.write(name, _raw(t))
    files = w.finish()
    names = sorted(f.path for f in files)
    assert INDEX_NAME in names
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    assert index["metadata"]["total_size"] == 5 * 256
    assert set(index["weight_map"]) == set(tensors)
    for f in files:
        assert hashlib.sha256((tmp_path / f.path).read_bytes()).hexdigest() == f.sha256
    for name, shard in index["weight_map"].items():
        with safe_open(tmp_path / shard, "pt") as st:
            assert st.metadata() == {"format": "pt"}
            assert torch.equal(st.get_tensor(name), tensors[name])


def test_write_bytes_atomic(tmp_path: Path) -> None:
    out = write_bytes_atomic(tmp_path / "a.json", b"{}")
    assert out.sha256 == hashlib.sha256(b"{}").hexdigest()
    assert (tmp_path / "a.json").read_bytes() == b"{}"
