"""Comparing two versions: every difference marked, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from loreg.db.models import AdapterVersion
from loreg.ui.compare import compare_versions
from loreg.ui.formatting import DASH


def _version(number: int, **changes: Any) -> AdapterVersion:
    fields: dict[str, Any] = {
        "number": number,
        "peft_type": "LORA",
        "r": 4,
        "lora_alpha": 8.0,
        "use_rslora": False,
        "use_dora": False,
        "rank_pattern": {},
        "alpha_pattern": {},
        "modules_to_save": None,
        "target_modules": ["q_proj", "v_proj"],
        "dtype": "F32",
        "num_parameters": 2048,
        "size_bytes": 8192,
        "adapter_config": {"r": 4, "lora_alpha": 8},
        "base_model_name": "acme/tiny",
        "labels": {"dataset": "alpaca"},
        "validation_state": "valid",
        "created_at": datetime(2025, 1, 2, 3, 4, tzinfo=UTC),
        "validation_report": {
            "modules": {
                "model.layers.0.self_attn.q_proj": {"delta_norm": 2.0},
                "model.layers.0.self_attn.v_proj": {"delta_norm": 1.0},
            }
        },
    }
    fields.update(changes)
    return AdapterVersion(**fields)


def _row(rows: list[dict[str, Any]], key: str, field: str = "key") -> dict[str, Any]:
    return next(r for r in rows if r[field] == key)


def test_the_same_version_twice_differs_nowhere() -> None:
    cmp = compare_versions(_version(1), _version(2))
    rows = [*cmp["facts"], *cmp["config"], *cmp["targets"], *cmp["labels"], *cmp["norms"]]
    assert rows and not any(r["differs"] for r in rows)
    assert cmp["norms_missing"] == []
    assert [r["key"] for r in cmp["facts"]][:3] == ["base model", "PEFT type", "rank"]
    assert _row(cmp["facts"], "size")["a"] == "8.0 KiB"
    assert _row(cmp["norms"], "model.layers.0.self_attn.q_proj", "module")["ratio"] == "1\u00d7"


def test_each_kind_of_difference_is_marked() -> None:
    b = _version(
        2,
        r=8,
        adapter_config={"r": 8, "lora_alpha": 8},
        target_modules=["q_proj", "k_proj"],
        labels={"dataset": "dolly"},
        validation_report={
            "modules": {
                "model.layers.0.self_attn.q_proj": {"delta_norm": 3.0},
                "model.layers.0.self_attn.k_proj": {"delta_norm": "n/a"},
            }
        },
    )
    cmp = compare_versions(_version(1), b)
    assert _row(cmp["facts"], "rank") == {"key": "rank", "a": "4", "b": "8", "differs": True}
    assert _row(cmp["config"], "r")["differs"] and not _row(cmp["config"], "lora_alpha")["differs"]
    targets = {t["module"]: (t["a"], t["b"], t["differs"]) for t in cmp["targets"]}
    assert targets == {
        "k_proj": (False, True, True),
        "q_proj": (True, True, False),
        "v_proj": (True, False, True),
    }
    assert _row(cmp["labels"], "dataset") == {
        "key": "dataset",
        "a": "alpaca",
        "b": "dolly",
        "differs": True,
    }
    q = _row(cmp["norms"], "model.layers.0.self_attn.q_proj", "module")
    assert q["ratio"] == "1.5\u00d7" and q["differs"]
    v = _row(cmp["norms"], "model.layers.0.self_attn.v_proj", "module")
    assert v["b"] == DASH and v["ratio"] == DASH and v["differs"]


def test_versions_without_norms_are_listed() -> None:
    cmp = compare_versions(_version(1, validation_report=None), _version(2))
    assert cmp["norms_missing"] == [1]
