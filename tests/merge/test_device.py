"""Device choice, and the same merge on CUDA as on the CPU where a GPU is present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loreg.errors import InvalidInput, Unavailable
from loreg.merge.device import resolve_device
from loreg.merge.options import Method, MethodOptions
from loreg.merge.stream import merge_checkpoint
from tests.factories.tiny_models import make_llama, make_lora_adapter


def test_resolve_device() -> None:
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InvalidInput):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(Unavailable):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["linear", "ties", "dare_ties"])
def test_cuda_matches_cpu(tmp_path: Path, method: Method) -> None:
    base = make_llama(tmp_path / "base")
    a0 = make_lora_adapter(base, tmp_path / "a0", use_dora=method == "linear")
    a1 = make_lora_adapter(base, tmp_path / "a1", seed=1)
    adapters = [(a0.path, 0.6), (a1.path, 0.4)]
    density = None if method == "linear" else 0.5
    for dev in ("cpu", "cuda"):
        merge_checkpoint(
            base.path,
            adapters,
            tmp_path / dev,
            options=MethodOptions(method=method, density=density),
            device=dev,
        )
    cpu = load_file(tmp_path / "cpu" / "model.safetensors")
    gpu = load_file(tmp_path / "cuda" / "model.safetensors")
    for name, t in cpu.items():
        torch.testing.assert_close(gpu[name], t, rtol=1e-4, atol=1e-5, msg=name)
