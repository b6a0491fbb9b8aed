"""LoRA delta weights on plain tensors, exactly as PEFT defines them.

PEFT stores ``lora_A`` as ``[r, in]`` and ``lora_B`` as ``[out, r]`` whatever the base layer
(``lora_embedding_A`` ``[r, num_embeddings]`` / ``lora_embedding_B`` ``[dim, r]`` for
embeddings; ``[r, in, *kernel]`` / ``[out, r, 1, ...]`` for convolutions). The product
``B @ A`` (the *matrix form*, ``[rows, cols]``) is turned into the base weight's layout by
transposing (``fan_in_fan_out`` Conv1D, embeddings) or reshaping (convolutions), and scaled
by ``alpha / r`` (``alpha / sqrt(r)`` with rslora). Everything here computes in float32;
callers cast once to the output dtype.

DoRA replaces ``W`` by ``m * (W + dW) / ||W + dW||`` where the norm is taken per output
feature (per embedding dimension for embeddings), as PEFT's ``merge`` does.
"""

from __future__ import annotations

import torch

from loreg.errors import Incompatible
from loreg.formats.types import LoraKind, LoraModule


def matrix_form(kind: LoraKind, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``B @ A`` as a 2-D float32 matrix (convolution kernels flattened into the columns)."""
    a32 = a.to(torch.float32)
    b32 = b.to(torch.float32)
    if kind == "conv":
        if any(d != 1 for d in b32.shape[2:]):
            raise Incompatible("conv LoRA with a non-1x1 lora_B kernel is not supported")
        return b32.reshape(b32.shape[0], -1) @ a32.reshape(a32.shape[0], -1)
    return b32 @ a32


def to_weight_layout(
    matrix: torch.Tensor,
    kind: LoraKind,
    *,
    fan_in_fan_out: bool,
    weight_shape: tuple[int, ...],
) -> torch.Tensor:
    """Turn a matrix-form delta into the base weight's layout."""
    if kind == "embedding" or (kind == "linear" and fan_in_fan_out):
        out = matrix.T
    elif kind == "conv":
        out = matrix.reshape(weight_shape)
    else:
        out = matrix
    if tuple(out.shape) != tuple(weight_shape):
        raise Incompatible(
            f"LoRA delta has shape {tuple(out.shape)}, base weight {tuple(weight_shape)}",
            details={"delta": list(out.shape), "weight": list(weight_shape)},
        )
    return out


def from_weight_layout(
    delta: torch.Tensor, kind: LoraKind, *, fan_in_fan_out: bool
) -> torch.Tensor:
    """The inverse of :func:`to_weight_layout`: a weight-layout delta as a 2-D matrix."""
    if kind == "embedding" or (kind == "linear" and fan_in_fan_out):
        return delta.T
    if kind == "conv":
        return delta.reshape(delta.shape[0], -1)
    return delta


def implied_weight_shape(module: LoraModule) -> tuple[int, ...]:
    """The base weight's shape that ``module``'s lora_A and lora_B imply."""
    a, b = module.a_shape, module.b_shape
    if module.kind == "embedding":
        return (a[1], b[0])
    if module.kind == "conv":
        return (b[0], *a[1:])
    return (a[1], b[0]) if module.fan_in_fan_out else (b[0], a[1])


def delta_weight(
    module: LoraModule,
    a: torch.Tensor,
    b: torch.Tensor,
    weight_shape: tuple[int, ...],
) -> torch.Tensor:
    """PEFT's ``get_delta_weight`` for ``module`` in float32, in the base weight's layout."""
    matrix = matrix_form(module.kind, a, b)
    delta = to_weight_layout(
        matrix, module.kind, fan_in_fan_out=module.fan_in_fan_out, weight_shape=weight_shape
    )
    return delta * module.scale


def dora_merge(
    weight: torch.Tensor,
    delta: torch.Tensor,
    magnitude: torch.Tensor,
    kind: LoraKind,
    *,
    fan_in_fan_out: bool,
) -> torch.Tensor:
    """DoRA's merged weight ``m * (W + dW) / ||W + dW||`` in float32, in W's layout.

    The norm runs over the input dimension(s), one value per output feature; for embeddings
    one value per embedding dimension (PEFT treats the embedding matrix as fan-in-fan-out).
    """
    w = weight.to(torch.float32)
    combined = w + delta.to(torch.float32)
    mag = magnitude.to(torch.float32).reshape(-1)
    if kind == "embedding":
        norm = torch.linalg.vector_norm(combined, dim=0)
        return (mag / norm).view(1, -1) * combined
    if kind == "conv":
        norm = torch.linalg.vector_norm(combined.reshape(combined.shape[0], -1), dim=1)
        view = (-1,) + (1,) * (combined.dim() - 1)
        return (mag / norm).view(*view) * combined
    if fan_in_fan_out:
        norm = torch.linalg.vector_norm(combined, dim=0)
        return (mag / norm).view(1, -1) * combined
    norm = torch.linalg.vector_norm(combined, dim=1)
    return (mag / norm).view(-1, 1) * combined


def bias_delta(module: LoraModule, lora_bias: torch.Tensor) -> torch.Tensor:
    """What ``lora_bias=True`` adds to the base layer's bias on merge: ``scale * lora_B.bias``."""
    return lora_bias.to(torch.float32) * module.scale
