"""Combination methods equal peft.utils.merge_utils on the same task vectors."""

from __future__ import annotations

import pytest
import torch
from peft.utils import merge_utils

from loreg.errors import InvalidInput
from loreg.merge.methods import combine_deltas, tensor_seed, truncated_svd
from loreg.merge.options import Method, MethodOptions, SignMethod


def _deltas(n: int = 3, shape: tuple[int, ...] = (12, 10)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(*shape, generator=g) for _ in range(n)]


WEIGHTS = [0.7, -0.4, 1.3]


@pytest.mark.parametrize("method", ["linear", "cat", "svd"])
def test_sums(method: Method) -> None:
    d = _deltas()
    out = combine_deltas(d, WEIGHTS, MethodOptions(method=method))
    torch.testing.assert_close(out, merge_utils.task_arithmetic(d, torch.tensor(WEIGHTS)))


@pytest.mark.parametrize("sign", ["total", "frequency"])
def test_ties_equals_peft(sign: SignMethod) -> None:
    d = _deltas()
    out = combine_deltas(
        d, WEIGHTS, MethodOptions(method="ties", density=0.4, majority_sign_method=sign)
    )
    ref = merge_utils.ties(d, torch.tensor(WEIGHTS), 0.4, majority_sign_method=sign)
    torch.testing.assert_close(out, ref)


def test_magnitude_prune_equals_peft() -> None:
    d = _deltas()
    out = combine_deltas(d, WEIGHTS, MethodOptions(method="magnitude_prune", density=0.3))
    torch.testing.assert_close(out, merge_utils.magnitude_prune(d, torch.tensor(WEIGHTS), 0.3))


@pytest.mark.parametrize("method", ["dare_linear", "dare_ties"])
def test_dare_equals_peft_with_same_seed(method: Method) -> None:
    d = _deltas()
    seed = tensor_seed(7, "model.layers.0.q_proj.weight")
    out = combine_deltas(
        d,
        WEIGHTS,
        MethodOptions(method=method, density=0.5),
        generator=torch.Generator().manual_seed(seed),
    )
    torch.manual_seed(seed)
    fn = getattr(merge_utils, method)
    ref = fn(d, torch.tensor(WEIGHTS), 0.5)
    torch.testing.assert_close(out, ref)
    again = combine_deltas(
        d,
        WEIGHTS,
        MethodOptions(method=method, density=0.5),
        generator=torch.Generator().manual_seed(seed),
    )
    assert torch.equal(out, again)


def test_bad_parameters() -> None:
    d = _deltas()
    with pytest.raises(InvalidInput):
        combine_deltas(d, WEIGHTS[:2], MethodOptions())
    with pytest.raises(InvalidInput):
        combine_deltas([], [], MethodOptions())


def test_truncated_svd_is_best_rank_k() -> None:
    m = _deltas(1, (20, 15))[0]
    b, a = truncated_svd(m, 4)
    assert b.shape == (20, 4) and a.shape == (4, 15)
    u, s, vh = torch.linalg.svd(m)
    ref = u[:, :4] @ torch.diag(s[:4]) @ vh[:4]
    torch.testing.assert_close(b @ a, ref, atol=1e-5, rtol=1e-5)
    # full rank is exact
    b, a = truncated_svd(m, 15)
    torch.testing.assert_close(b @ a, m, atol=1e-5, rtol=1e-5)
    b, a = truncated_svd(m, 4, clamp=0.9)
    hi = torch.quantile(
        torch.cat([(u[:, :4] * s[:4]).abs().flatten(), vh[:4].abs().flatten()]), 0.9
    )
    assert b.abs().max() <= hi + 1e-6 and a.abs().max() <= hi + 1e-6
