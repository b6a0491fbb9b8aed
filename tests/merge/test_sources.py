"""Tensor bytes without numpy: views that keep their tensor alive, and ``save_tensors``."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loreg.formats.safetensors import read_header_file
from loreg.merge.sources import byte_view, read_tensor, save_tensors, tensor_bytes
from loreg.merge.stream import merge_checkpoint
from tests.factories.tiny_models import make_llama, make_lora_adapter


def test_tensor_bytes_are_the_tensors_memory() -> None:
    for t in (
        torch.arange(12, dtype=torch.float32).reshape(3, 4),
        torch.randn(5, 3, dtype=torch.bfloat16),
        torch.tensor([True, False]),
    ):
        view = tensor_bytes(t)
        assert view.format == "B" and view.nbytes == t.numel() * t.element_size()
        assert bytes(view) == t.reshape(-1).view(torch.uint8).numpy().tobytes()


def test_a_view_keeps_its_tensor_alive() -> None:
    """The merge hands views to a writer thread after the tensor's last name is gone."""
    view = tensor_bytes(torch.full((256, 256), 7.0))  # a temporary: only the view refers to it
    gc.collect()
    garbage = [torch.full((256, 256), 1.0) for _ in range(20)]  # reuse freed memory, if any
    assert bytes(view) == torch.full((256, 256), 7.0).numpy().tobytes()
    del garbage


def test_views_of_non_contiguous_and_empty_tensors() -> None:
    t = torch.arange(12, dtype=torch.int32).reshape(3, 4).T
    assert bytes(tensor_bytes(t)) == t.contiguous().numpy().tobytes()  # copied, then viewed
    with pytest.raises(ValueError):
        byte_view(t)  # the raw view refuses: its bytes are not in order
    assert tensor_bytes(torch.empty(0, 3)).nbytes == 0


def test_read_tensor_fills_a_tensor_in_place(tmp_path: Path) -> None:
    t = {"w": torch.randn(4, 6), "b": torch.arange(3, dtype=torch.int64)}
    path = tmp_path / "x.safetensors"
    save_tensors(t, path)
    header = read_header_file(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        for name, expected in t.items():
            assert torch.equal(read_tensor(fd, header.tensors[name]), expected)
    finally:
        os.close(fd)


def test_save_tensors_writes_what_safetensors_reads(tmp_path: Path) -> None:
    tensors = {
        "b.weight": torch.randn(3, 4, dtype=torch.bfloat16),
        "a.ids": torch.arange(5),
        "empty": torch.zeros(0, 3),
        "transposed": torch.randn(4, 3).T,
        "half": torch.randn(2, 2, dtype=torch.float16),
    }
    path = tmp_path / "t.safetensors"
    out = save_tensors(tensors, path, metadata={"format": "pt"})
    loaded = load_file(str(path))
    assert loaded.keys() == tensors.keys()
    for name, t in tensors.items():
        assert torch.equal(loaded[name], t), name
    assert read_header_file(path).metadata == {"format": "pt"}
    assert out.size == path.stat().st_size and not list(tmp_path.glob("*.incomplete"))


def test_save_tensors_refuses_a_dtype_safetensors_cannot_name(tmp_path: Path) -> None:
    from loreg.errors import InvalidInput

    with pytest.raises(InvalidInput):
        save_tensors({"c": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "c.safetensors")
    assert list(tmp_path.iterdir()) == []


_WITHOUT_NUMPY = """
import json, sys
sys.modules["numpy"] = None  # `import numpy` now fails, as where it is not installed
import torch
from pathlib import Path
from loreg.merge.sources import save_tensors
from loreg.merge.stream import merge_checkpoint
try:
    torch.zeros(1).numpy()
except Exception as exc:
    numpy_error = type(exc).__name__
else:
    numpy_error = None
base, adapter, out = (Path(p) for p in sys.argv[1:4])
result = merge_checkpoint(base, [(adapter, 1.0)], out, device="cpu")
save_tensors({"x": torch.ones(2, 2)}, out.parent / "saved.safetensors")
print(json.dumps({"numpy_error": numpy_error, "files": sorted(f.path for f in result.files)}))
"""


@pytest.mark.slow
def test_merge_and_save_run_without_numpy(tmp_path: Path) -> None:
    """numpy is no runtime dependency: the merge engine must not need it (torch's CPU
    wheel does not install it)."""
    base = make_llama(tmp_path / "base")
    adapter = make_lora_adapter(base, tmp_path / "adapter")
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            _WITHOUT_NUMPY,
            str(base.path),
            str(adapter.path),
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout)
    assert doc["numpy_error"] is not None  # numpy really was unavailable
    with_numpy = merge_checkpoint(base.path, [(adapter.path, 1.0)], tmp_path / "ref", device="cpu")
    assert doc["files"] == sorted(f.path for f in with_numpy.files)
    for f in with_numpy.files:
        assert (tmp_path / "out" / f.path).read_bytes() == (tmp_path / "ref" / f.path).read_bytes()
    assert torch.equal(load_file(str(tmp_path / "saved.safetensors"))["x"], torch.ones(2, 2))
