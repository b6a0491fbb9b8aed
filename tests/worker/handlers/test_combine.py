"""``combine`` jobs: ties over two adapters creates a new version with lineage whose B@A
equals the merge engine's offline combination for the same inputs and seed."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from sqlalchemy import select

from loreg.db import AdapterVersion, Lineage, VersionFile
from loreg.merge.combine import combine_adapters
from loreg.merge.options import MethodOptions
from loreg.worker.loop import Worker
from tests.factories import make_lora_adapter
from tests.factories.worker_stack import Models, Stack


def _ba(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, a in tensors.items():
        if ".lora_A." in key:
            b = tensors[key.replace(".lora_A.", ".lora_B.")]
            out[key.replace(".lora_A.weight", "")] = b.float() @ a.float()
    return out


def test_ties_combine_creates_version_with_lineage(
    stack: Stack, models: Models, tmp_path: Path
) -> None:
    second = make_lora_adapter(models.base, tmp_path / "second", r=2, seed=5)
    stack.register_base(models.base.path, "org/tiny")
    v1 = stack.push(models.adapter.path, "admin", "one", "org/tiny")
    v2 = stack.push(second.path, "admin", "two", "org/tiny")
    params = {
        "adapters": [{"ref": "admin/one", "weight": 0.7}, {"ref": "admin/two", "weight": 0.3}],
        "method": "ties",
        "density": 0.5,
        "seed": 7,
        "target": "admin/combined:best",
    }
    job_id = stack.submit("combine", params)
    Worker(stack.settings, sessions=stack.sessions, store=stack.store).run(once=True)
    job = stack.job(job_id)
    assert job.status == "succeeded", job.error
    assert job.result is not None and job.result["version"]["ref"] == "admin/combined@1"

    with stack.sessions() as s:
        child = s.scalars(
            select(AdapterVersion).where(
                AdapterVersion.id != v1.id,
                AdapterVersion.id != v2.id,
                AdapterVersion.digest == job.result["version"]["digest"],
            )
        ).one()
        rows = s.scalars(
            select(Lineage).where(Lineage.child_version_id == child.id).order_by(Lineage.position)
        ).all()
        assert [(r.parent_version_id, r.weight, r.method) for r in rows] == [
            (v1.id, 0.7, "ties"),
            (v2.id, 0.3, "ties"),
        ]
        assert rows[0].params == {"density": 0.5, "majority_sign_method": "total", "seed": 7}
        files = {
            f.path: f.blob_digest
            for f in s.scalars(select(VersionFile).where(VersionFile.version_id == child.id))
        }
    stack.store.download(files["adapter_model.safetensors"], tmp_path / "got.safetensors")
    got = _ba(load_file(str(tmp_path / "got.safetensors")))

    combine_adapters(
        [(models.adapter.path, 0.7), (second.path, 0.3)],
        tmp_path / "offline",
        options=MethodOptions(method="ties", density=0.5, seed=7),
        device="cpu",
    )
    want = _ba(load_file(str(tmp_path / "offline" / "adapter_model.safetensors")))
    assert got.keys() == want.keys() and got
    for k in got:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=k)
