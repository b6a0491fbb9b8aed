"""Job parameters: each type's schema, shorthands, and one clear error naming bad fields."""

from __future__ import annotations

import pytest

from loreg.errors import InvalidInput
from loreg.services.job_params import CombineParams, MergeParams, parse_params


def test_adapters_may_be_given_as_refs() -> None:
    params = parse_params("merge", {"adapters": ["ns/a", {"ref": "ns/b", "weight": 0.5}]})
    assert isinstance(params, MergeParams)
    assert [(a.ref, a.weight) for a in params.adapters] == [("ns/a", 1.0), ("ns/b", 0.5)]
    assert params.method == "linear" and params.majority_sign_method == "total"


def test_combine_takes_its_target_as_to_or_target() -> None:
    for key in ("to", "target"):
        params = parse_params("combine", {"adapters": ["ns/a"], key: "ns/out:v1"})
        assert isinstance(params, CombineParams) and params.target == "ns/out:v1"


@pytest.mark.parametrize(
    ("job_type", "params", "field"),
    [
        ("merge", {"adapters": []}, "adapters"),
        ("merge", {"adapters": ["a/b"], "method": "average"}, "method"),
        ("merge", {"adapters": ["a/b"], "density": 1.5}, "density"),
        ("merge", {"adapters": ["a/b"], "surprise": 1}, "surprise"),
        ("export", {"adapter": "a/b", "dtype": "int8"}, "dtype"),
    ],
)
def test_bad_fields_are_named(job_type: str, params: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_params(job_type, params)
    assert field in err.value.message
    assert any(e["field"].startswith(field) for e in err.value.details["errors"])


def test_unknown_types_and_non_objects() -> None:
    with pytest.raises(InvalidInput, match="unknown job type"):
        parse_params("train", {})
    with pytest.raises(InvalidInput, match="JSON object"):
        parse_params("merge", ["a/b"])
