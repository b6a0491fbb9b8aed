"""Combination methods on dense delta weights (task vectors).

Names and parameters follow PEFT's ``add_weighted_adapter``; the definitions follow the
TIES (Yadav et al. 2023) and DARE (Yu et al. 2023) papers as ``peft.utils.merge_utils`` and
mergekit implement them, applied to each adapter's *dense* delta ``dW_i`` (scaling included):

- ``linear`` / ``cat`` / ``svd``: ``sum_i w_i dW_i``. (In a combination into a new adapter,
  linear and cat are exact by concatenation and svd is the best rank-k approximation.)
- ``magnitude_prune``: keep the top ``density`` fraction of each ``dW_i`` by magnitude, then
  the weighted sum.
- ``ties``: magnitude-prune each ``dW_i``, elect a sign per entry (``total``: sign of the sum;
  ``frequency``: the more frequent sign), then average the weighted entries that agree.
- ``dare_linear`` / ``dare_ties``: drop entries at random with probability ``1 - density``
  and rescale the rest by ``1 / density``, then the weighted sum / the TIES sign election.

Random masks come from a CPU generator seeded per tensor (:func:`tensor_seed`), so a merge
is reproducible whatever the device and whatever order the tensors are visited in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from loreg.errors import InvalidInput
from loreg.merge.options import SUM_METHODS, MethodOptions


def tensor_seed(seed: int, name: str) -> int:
    """A per-tensor seed derived from the merge seed and the tensor's name."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def magnitude_prune_one(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``int(density * numel)`` entries of largest magnitude, zero the rest."""
    k = int(density * delta.numel())
    flat = delta.reshape(-1)
    mask = torch.zeros_like(flat)
    if k > 0:
        mask[torch.topk(flat.abs(), k=k, largest=True).indices] = 1
    return delta * mask.reshape(delta.shape)


def random_prune_one(
    delta: torch.Tensor, density: float, generator: torch.Generator, *, rescale: bool = True
) -> torch.Tensor:
    """Keep each entry with probability ``density`` (CPU-drawn mask), rescaled by 1/density."""
    probs = torch.full(delta.shape, density, dtype=delta.dtype)
    mask = torch.bernoulli(probs, generator=generator).to(delta.device)
    pruned = delta * mask
    return pruned / density if rescale else pruned


def majority_sign_mask(stacked: torch.Tensor, method: str = "total") -> torch.Tensor:
    """Per entry, which task vectors carry the elected sign."""
    sign = stacked.sign()
    magnitude = stacked.sum(dim=0) if method == "total" else sign.sum(dim=0)
    elected = torch.where(magnitude >= 0, 1.0, -1.0).to(stacked.dtype)
    return sign == elected


def disjoint_merge(weighted: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the task vectors that agree with the elected sign (0 where none do)."""
    total = (weighted * mask).sum(dim=0)
    count = mask.sum(dim=0).to(weighted.dtype)
    return total / torch.clamp(count, min=1.0)


def _weighted(stacked: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    w = torch.tensor(list(weights), dtype=stacked.dtype, device=stacked.device)
    return stacked * w.view(-1, *([1] * (stacked.dim() - 1)))


def combine_deltas(
    deltas: Sequence[torch.Tensor],
    weights: Sequence[float],
    options: MethodOptions,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Combine same-shaped dense deltas into one, as ``options.method`` says (see above).

    ``generator`` (a CPU generator) drives DARE's random masks; pass one seeded with
    :func:`tensor_seed` for reproducible merges.
    """
    if len(deltas) != len(weights) or not deltas:
        raise InvalidInput("need one weight per delta and at least one delta")
    method = options.method
    if method in SUM_METHODS:
        out = deltas[0] * weights[0]
        for delta, weight in zip(deltas[1:], weights[1:], strict=True):
            out = out + delta * weight
        return out
    density = options.density
    assert density is not None  # MethodOptions checks it
    if method in ("ties", "magnitude_prune"):
        pruned = [magnitude_prune_one(d, density) for d in deltas]
    else:
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        pruned = [random_prune_one(d, density, generator) for d in deltas]
    stacked = torch.stack(pruned, dim=0)
    if method in ("magnitude_prune", "dare_linear"):
        return _weighted(stacked, weights).sum(dim=0)
    mask = majority_sign_mask(stacked, options.majority_sign_method)
    return disjoint_merge(_weighted(stacked, weights), mask)


def truncated_svd(
    matrix: torch.Tensor, rank: int, *, clamp: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-``rank`` factors ``(B, A)`` of a 2-D matrix, ``B @ A ~= matrix``.

    Eckart-Young: the truncated SVD is the best approximation in Frobenius and spectral norm.
    The singular values go to B (``U * S``), A is ``Vh``. ``clamp`` (a quantile in (0, 1],
    as PEFT's ``svd_clamp``) clips the entries of both factors to that quantile of their
    absolute values, trading exactness for outlier-free factors.
    """
    if matrix.dim() != 2:
        raise InvalidInput("truncated_svd needs a 2-D matrix")
    rank = max(1, min(rank, *matrix.shape))
    u, s, vh = torch.linalg.svd(matrix.to(torch.float32), full_matrices=False)
    b = u[:, :rank] * s[:rank]
    a = vh[:rank, :]
    if clamp is not None:
        if not 0.0 < clamp <= 1.0:
            raise InvalidInput(f"clamp must be a quantile in (0, 1], got {clamp}")
        values = torch.cat([b.abs().reshape(-1), a.abs().reshape(-1)])
        if values.numel() > 16_000_000:  # torch.quantile's input limit
            values = values[torch.randperm(values.numel(), device=values.device)[:16_000_000]]
        hi = torch.quantile(values, clamp)
        b = b.clamp(-hi, hi)
        a = a.clamp(-hi, hi)
    return b, a
