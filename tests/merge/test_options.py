"""The method vocabulary: one spelling, checked before any tensor is read, and torch-free."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from loreg.errors import InvalidInput
from loreg.merge.options import (
    DENSITY_METHODS,
    DTYPES,
    EXACT_METHODS,
    METHODS,
    OPTION_NAMES,
    OUTPUT_DTYPES,
    SUM_METHODS,
    MethodOptions,
)


def test_every_method_is_a_sum_or_takes_a_density() -> None:
    assert set(METHODS) == SUM_METHODS | DENSITY_METHODS
    assert not SUM_METHODS & DENSITY_METHODS
    assert EXACT_METHODS < SUM_METHODS
    assert tuple(OUTPUT_DTYPES) == DTYPES


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"method": "ties"}, "needs a density"),
        ({"method": "nope"}, "unknown method 'nope'"),
        ({"method": "ties", "density": 1.5}, "density must be in (0, 1]"),
        ({"method": "dare_linear", "density": 0.0}, "density must be in (0, 1]"),
        ({"majority_sign_method": "mean"}, "'total' or 'frequency'"),
        ({"svd_rank": 0}, "svd_rank must be at least 1"),
        ({"svd_clamp": 1.5}, "svd_clamp must be a quantile"),
    ],
)
def test_bad_options_are_refused_when_made(given: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        MethodOptions(**given)
    assert words in err.value.message


def test_from_params_takes_the_named_options_and_defaults_the_rest() -> None:
    params = {
        "method": "ties",
        "density": 0.5,
        "svd_rank": None,
        "dtype": "float16",
        "adapters": ["a/b"],
    }
    options = MethodOptions.from_params(params)
    assert options == MethodOptions(method="ties", density=0.5)
    assert options.to_dict() == {
        "method": "ties",
        "density": 0.5,
        "majority_sign_method": "total",
        "svd_rank": None,
        "svd_clamp": None,
        "seed": 0,
    }
    assert tuple(options.to_dict()) == OPTION_NAMES
    assert MethodOptions.from_params({}) == MethodOptions()
    with pytest.raises(InvalidInput):
        MethodOptions.from_params({"method": "ties"})


def test_exact_only_for_the_concatenating_methods() -> None:
    assert MethodOptions(method="cat").exact
    assert not MethodOptions(method="svd").exact
    assert not MethodOptions(method="ties", density=0.5).exact


def test_the_vocabulary_loads_without_torch() -> None:
    code = (
        "import sys; import loreg.merge.options; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
