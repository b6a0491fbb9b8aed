"""Which device does the matrix work: ``auto`` (CUDA when available), ``cuda`` or ``cpu``.

Only the arithmetic moves to the GPU. Bytes that are copied through never leave host
memory, and tensors that change travel host -> device -> host once each. The overlap comes
from the merge's pipeline: while the GPU works on one tensor, the reader thread is already
reading the next one and the writer thread writing the previous one. (Host buffers are not
pinned: pinning each tensor costs more than the asynchronous copy saves.)
"""

from __future__ import annotations

from typing import Literal

import torch

from loreg.errors import InvalidInput, Unavailable

DeviceName = Literal["auto", "cuda", "cpu"]
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cuda", "cpu")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``.

    Asking for ``cuda`` on a machine without one is an error (the caller asked for it
    explicitly), not a silent fallback.
    """
    if isinstance(device, torch.device):
        return device
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise Unavailable("device 'cuda' was requested but no CUDA device is available")
        return torch.device(name)
    raise InvalidInput(f"unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}")


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a host tensor to ``device`` (asynchronously when it is already pinned)."""
    if device.type == "cpu":
        return tensor
    return tensor.to(device, non_blocking=tensor.is_pinned())


def to_host(tensor: torch.Tensor) -> torch.Tensor:
    """Bring a result back to host memory (synchronously: the caller writes it next)."""
    if tensor.device.type == "cpu":
        return tensor
    return tensor.to("cpu")
