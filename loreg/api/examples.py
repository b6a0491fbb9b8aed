"""Request and response examples shown in the OpenAPI document (and so in ``/docs``).

They are what a real push, merge job and search of a Llama-3.1-8B rank-16 adapter send and
get; tests/api/test_openapi.py checks every one against its schema, so they cannot drift.
"""

from __future__ import annotations

from typing import Any

_BASE = "meta-llama/Llama-3.1-8B"
_BASE_FP = "sha256:5b1e0a0c4b1ab8bd1d0b0e87b3d4d3a7e9f1c52e6d0f8b5a8c3e4f2a1b0c9d8e"
_CONFIG = "sha256:0101fd81eef31e2f1dc993d03c84f6814353a0b62d5fc0d641706a31398b24b0"
_WEIGHTS = "sha256:f40e55a1e2ea595a7f40eea55ccfa5fa05a0984fd5e8e8d74ea98e1aff16cd5c"
_README = "sha256:11a0ab7e7c796f392d4fa548420ec74660c0f691c976e4240414bf7d5bfcb579"
_VERSION = "sha256:0427f0927d76d01ffe4f4c72543f1c440c973630aa7df85581a944f375effadb"
_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
_WHEN = "2026-03-02T09:14:03.510172Z"

FILES: list[dict[str, Any]] = [
    {"path": "README.md", "digest": _README, "size": 5162},
    {"path": "adapter_config.json", "digest": _CONFIG, "size": 1109},
    {"path": "adapter_model.safetensors", "digest": _WEIGHTS, "size": 27262976},
]

UPLOAD_CHECK_REQUEST = {"digests": [f["digest"] for f in FILES]}
UPLOAD_CHECK_RESPONSE = {"missing": [_WEIGHTS]}

PUSH_REQUEST: dict[str, Any] = {
    "files": FILES,
    "base": _BASE,
    "tags": ["prod"],
    "labels": {"dataset": "tickets-v3", "run": "4711", "eval_accuracy": 0.91},
    "description": "Support-ticket assistant, rank 16 on the attention projections",
}

PUSH_RESPONSE: dict[str, Any] = {
    "namespace": "acme",
    "name": "support-bot",
    "ref": "acme/support-bot@3",
    "number": 3,
    "digest": _VERSION,
    "peft_type": "LORA",
    "task_type": "CAUSAL_LM",
    "r": 16,
    "lora_alpha": 32.0,
    "use_rslora": False,
    "use_dora": False,
    "rank_pattern": {},
    "alpha_pattern": {},
    "target_modules": _TARGETS,
    "modules_to_save": None,
    "fan_in_fan_out": False,
    "dtype": "BF16",
    "num_parameters": 13631488,
    "size_bytes": 27262976,
    "total_size": 27269247,
    "adapter_config": {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": 16,
        "lora_alpha": 32,
        "target_modules": _TARGETS,
        "base_model_name_or_path": _BASE,
    },
    "base": _BASE,
    "base_model": {"name": _BASE, "fingerprint": _BASE_FP},
    "base_model_name_or_path": _BASE,
    "labels": {"dataset": "tickets-v3", "run": "4711", "eval_accuracy": 0.91},
    "description": "Support-ticket assistant, rank 16 on the attention projections",
    "owner": "acme",
    "created_by": "ci-bot",
    "created_at": _WHEN,
    "validation_state": "pending",
    "validation_report": None,
    "compatibility": {
        "compatible": True,
        "match": "exact",
        "modules_checked": 128,
        "saved_modules_checked": 0,
        "base_fingerprint": _BASE_FP,
        "problems": [],
        "warnings": [],
        "notes": [],
    },
    "tags": ["latest", "prod"],
    "files": FILES,
    "lineage": [],
    "deleted_at": None,
    "delete_reason": None,
    "created": True,
    "job_id": "910004bdd7844a5baf2fe84759b6e60d",
}

INCOMPATIBLE_RESPONSE: dict[str, Any] = {
    "error": {
        "code": "incompatible",
        "message": f"adapter is incompatible with base model '{_BASE}':\n  error[shape_mismatch] "
        "model.layers.0.self_attn.k_proj: lora_A is [16, 4096], expected [16, 3072]",
        "details": {
            "compatible": False,
            "modules_checked": 128,
            "problems": [
                {
                    "severity": "error",
                    "code": "shape_mismatch",
                    "module": "model.layers.0.self_attn.k_proj",
                    "tensor": "lora_A",
                    "expected": [16, 3072],
                    "found": [16, 4096],
                    "message": "lora_A is [16, 4096], expected [16, 3072]",
                    "details": None,
                }
            ],
            "warnings": [],
        },
    }
}

MERGE_JOB_REQUEST: dict[str, Any] = {
    "type": "merge",
    "params": {
        "base": _BASE,
        "adapters": [{"ref": "acme/support-bot:prod", "weight": 1.0}],
        "method": "linear",
        "dtype": "bfloat16",
    },
}
COMBINE_JOB_REQUEST: dict[str, Any] = {
    "type": "combine",
    "params": {
        "adapters": [
            {"ref": "acme/support-bot@3", "weight": 0.7},
            {"ref": "acme/billing-bot@1", "weight": 0.3},
        ],
        "method": "ties",
        "density": 0.5,
        "target": "acme/support-billing:v1",
    },
}
VALIDATE_JOB_REQUEST: dict[str, Any] = {
    "type": "validate",
    "params": {"adapter": "acme/support-bot@3"},
}

JOB_RESPONSE: dict[str, Any] = {
    "id": "0f4fb56a04e64cb087a338feddb0610f",
    "type": "merge",
    "status": "queued",
    "priority": 0,
    "params": {
        "base": {"name": _BASE, "fingerprint": _BASE_FP},
        "adapters": [{"ref": "acme/support-bot:prod", "weight": 1.0}],
        "inputs": [
            {
                "ref": "acme/support-bot:prod",
                "resolved": "acme/support-bot@3",
                "digest": _VERSION,
                "weight": 1.0,
            }
        ],
        "method": "linear",
        "dtype": "bfloat16",
        "max_shard_bytes": 5000000000,
    },
    "submitted_by": "ci-bot",
    "created_at": _WHEN,
    "started_at": None,
    "finished_at": None,
    "updated_at": _WHEN,
    "attempts": 0,
    "max_attempts": 3,
    "worker": None,
    "lease_expires_at": None,
    "progress": 0.0,
    "progress_message": "queued",
    "result": None,
    "error": None,
    "cancel_requested": False,
    "outputs_expire_at": None,
    "duration_seconds": None,
    "deduplicated": False,
}

SEARCH_RESPONSE: dict[str, Any] = {
    "adapters": [
        {
            "namespace": "acme",
            "name": "support-bot",
            "public": False,
            "visibility": "private",
            "description": "Support-ticket assistant, rank 16 on the attention projections",
            "created_at": "2026-02-11T16:40:00Z",
            "updated_at": _WHEN,
            "created_by": "ci-bot",
            "versions_count": 3,
            "latest": {
                "number": 3,
                "digest": _VERSION,
                "r": 16,
                "base": _BASE,
                "target_modules": _TARGETS,
                "validation_state": "valid",
                "created_at": _WHEN,
            },
            "base": _BASE,
            "tags": {"latest": 3, "prod": 3, "canary": 2},
        }
    ],
    "next_cursor": "eyJpZCI6MTIsImsiOiJhZGFwdGVycyJ9",
}


def _named(summary: str, value: Any) -> dict[str, Any]:
    return {"summary": summary, "value": value}


#: operationId -> where ("request" or a status) -> name -> {summary, value}. Applied to the
#: generated document as it is (FastAPI's generator drops null values from examples, which
#: would make these disagree with their own schemas).
OPERATION_EXAMPLES: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "check_uploads": {
        "request": {
            "push": _named("The digests of an adapter's three files", UPLOAD_CHECK_REQUEST)
        },
        "200": {"one missing": _named("Only the weights need uploading", UPLOAD_CHECK_RESPONSE)},
    },
    "push_version": {
        "request": {
            "push": _named("Three files, a tag and labels", PUSH_REQUEST),
            "minimal": _named(
                "Only the files (base from base_model_name_or_path)", {"files": FILES[1:]}
            ),
        },
        "201": {"created": _named("A new version", PUSH_RESPONSE)},
        "422": {
            "incompatible": _named("A shape that does not fit the base", INCOMPATIBLE_RESPONSE)
        },
    },
    "submit_job": {
        "request": {
            "merge": _named("Merge one adapter into its base (bfloat16)", MERGE_JOB_REQUEST),
            "combine": _named("TIES-combine two adapters into a new one", COMBINE_JOB_REQUEST),
            "validate": _named("Validate a version's tensors", VALIDATE_JOB_REQUEST),
        },
        "201": {"queued": _named("A merge job, queued", JOB_RESPONSE)},
    },
    "search_adapters": {
        "200": {
            "search": _named(
                "GET /api/v1/adapters?base=meta-llama/Llama-3.1-8B"
                "&target=q_proj&label=dataset=tickets-v3",
                SEARCH_RESPONSE,
            )
        },
    },
}


def add_examples(schema: dict[str, Any]) -> None:
    """Put ``OPERATION_EXAMPLES`` into a generated OpenAPI document (JSON media types)."""
    for item in schema.get("paths", {}).values():
        for op in item.values():
            for where, named in OPERATION_EXAMPLES.get(op.get("operationId"), {}).items():
                holder = (
                    op.get("requestBody")
                    if where == "request"
                    else op.get("responses", {}).get(where)
                )
                if holder is None:
                    raise KeyError(f"{op['operationId']} has no {where} to give examples")
                media = holder.setdefault("content", {}).setdefault("application/json", {})
                media["examples"] = named
