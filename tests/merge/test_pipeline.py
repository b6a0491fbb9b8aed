"""The reader and writer threads: every byte once, in order, hashed, and errors handed on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from loreg.merge.pipeline import BaseReader, WriterThread
from loreg.merge.plan import TensorPlan
from loreg.merge.sources import COPY_CHUNK, BaseCheckpoint, open_base, tensor_bytes
from loreg.merge.writer import ShardedSafetensorsWriter, TensorSpec, WriterError


@pytest.fixture
def base(tmp_path: Path) -> BaseCheckpoint:
    g = torch.Generator().manual_seed(0)
    tensors = {
        "big": torch.randn(COPY_CHUNK // 4 + 1000, generator=g),  # more than one chunk
        "small": torch.randn(3, 5, generator=g),
        "empty": torch.zeros(0),
        "whole": torch.randn(4, 4, generator=g),
    }
    save_file(tensors, str(tmp_path / "model.safetensors"))
    return open_base(tmp_path)


def _plans(base: BaseCheckpoint, computed: set[str]) -> list[TensorPlan]:
    plans = []
    for rel, info in base.order:
        plan = TensorPlan(rel, info, TensorSpec(info.name, info.dtype, info.shape))
        if info.name in computed:
            plan.replace = (0, info.name)  # anything that makes it computed
        plans.append(plan)
    return plans


def test_every_tensor_arrives_whole_or_in_chunks_and_is_hashed(base: BaseCheckpoint) -> None:
    want = load_file(str(base.path / "model.safetensors"))
    reader = BaseReader(base, _plans(base, {"whole"}), hash_bytes=True, pin=False)
    reader.start()
    got: dict[str, bytes] = {}
    chunks: dict[str, int] = {}
    for item in reader:
        plan: TensorPlan = item[1]
        if item[0] == "tensor":
            got[plan.info.name] = bytes(tensor_bytes(item[2]))
            continue
        _, _, buf, n, last = item
        if buf is not None:
            got[plan.info.name] = got.get(plan.info.name, b"") + bytes(buf[:n])
            chunks[plan.info.name] = chunks.get(plan.info.name, 0) + 1
            reader.free.put(buf)
        assert last == (len(got.get(plan.info.name, b"")) == plan.info.nbytes)
    reader.join()
    assert chunks["big"] == 2 and "whole" not in chunks
    for name, t in want.items():
        assert got.get(name, b"") == bytes(tensor_bytes(t.contiguous())), name
    hashes = {name: digest for name, _, _, digest in reader.records}
    assert hashes == {
        name: hashlib.sha256(bytes(tensor_bytes(t.contiguous()))).hexdigest()
        for name, t in want.items()
    }


def test_halt_stops_the_reader_mid_file(base: BaseCheckpoint) -> None:
    reader = BaseReader(base, _plans(base, set()), hash_bytes=False, pin=False)
    reader.start()
    next(iter(reader))  # the consumer takes one item and gives up
    reader.halt()
    assert not reader.is_alive()


def test_a_read_error_reaches_the_consumer(base: BaseCheckpoint) -> None:
    plans = _plans(base, set())
    (base.path / "model.safetensors").unlink()
    reader = BaseReader(base, plans, hash_bytes=False, pin=False)
    reader.start()
    with pytest.raises(FileNotFoundError):
        list(reader)


def test_the_writer_thread_writes_in_order_and_releases_buffers(tmp_path: Path) -> None:
    specs = [TensorSpec("a", "F32", (2,)), TensorSpec("b", "F32", (1,))]
    writer = ShardedSafetensorsWriter(tmp_path, specs)
    released: list[str] = []
    wthread = WriterThread(writer)
    wthread.start()
    wthread.submit("a", tensor_bytes(torch.tensor([1.0, 2.0])), lambda: released.append("a"))
    wthread.submit("b", tensor_bytes(torch.tensor([3.0])))
    wthread.close()
    writer.finish()
    assert released == ["a"]
    out = load_file(str(tmp_path / "model.safetensors"))
    assert out["a"].tolist() == [1.0, 2.0] and out["b"].tolist() == [3.0]


def test_a_write_error_is_raised_by_close(tmp_path: Path) -> None:
    writer = ShardedSafetensorsWriter(tmp_path, [TensorSpec("a", "F32", (1,))])
    released: list[int] = []
    wthread = WriterThread(writer)
    wthread.start()
    wthread.submit("not-a", b"\0" * 4, lambda: released.append(1))
    with pytest.raises(WriterError, match="expected bytes of 'a'"):
        wthread.close()
    assert released == [1]  # the buffer comes back even when its write failed
    writer.abort()
