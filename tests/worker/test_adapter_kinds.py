"""Server merges of the adapter kinds beyond plain LoRA, on both back ends.

Each kind (MoE expert parameters stored per expert or fused, trainable tokens, AdaLoRA,
trained biases) is pushed to a registry on SQLite + a local folder and on PostgreSQL + S3,
merged by a worker, downloaded and compared with PEFT: every tensor equal to
``merge_and_unload()`` as transformers saves it, the same logits after ``from_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loreg.worker.loop import Worker
from tests.factories import load_model
from tests.factories.adapter_kinds import KINDS, build_kind
from tests.factories.merge_inputs import peft_merged_checkpoint
from tests.factories.worker_stack import Stack


def merged_state(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _merge_on_server(stack: Stack, kind: str, tmp_path: Path) -> None:
    case = build_kind(kind, tmp_path / "in")
    stack.register_base(case.base.path, "org/base")
    version = stack.push(case.adapter, "admin", "kind", "org/base")
    assert version.validation_state == "pending"
    job_id = stack.submit(
        "merge", {"base": "org/base", "adapters": ["admin/kind"], "max_shard_bytes": 1 << 20}
    )
    Worker(stack.settings, sessions=stack.sessions, store=stack.store).run(once=True)
    job = stack.job(job_id)
    assert job.status == "succeeded", job.error
    out = stack.download_outputs(job_id, tmp_path / "out")
    got = merged_state(out)
    peft_model, want = peft_merged_checkpoint(
        case.base, case.adapter, tmp_path / "peft", vocab=case.vocab
    )
    assert set(got) == set(want)
    for name, tensor in got.items():
        torch.testing.assert_close(tensor, want[name], rtol=1e-5, atol=1e-6, msg=name)
    ids = torch.tensor([list(case.input_ids)])
    with torch.no_grad():
        torch.testing.assert_close(
            load_model(out)(input_ids=ids).logits,
            peft_model(input_ids=ids).logits,
            rtol=1e-5,
            atol=1e-5,
        )


@pytest.mark.parametrize("kind", KINDS)
def test_server_merge_sqlite_local(stack: Stack, tmp_path: Path, kind: str) -> None:
    _merge_on_server(stack, kind, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_server_merge_postgres_s3(pg_stack: Stack, tmp_path: Path, kind: str) -> None:
    _merge_on_server(pg_stack, kind, tmp_path)
