"""``export`` jobs: a version as a PEFT folder, cast to float16, loadable by PEFT."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import torch
from peft import PeftModel
from safetensors.torch import load_file

from loreg.worker.loop import Worker
from tests.factories import load_model
from tests.factories.worker_stack import Models, Stack


def test_export_float16(stack: Stack, models: Models, tmp_path: Path) -> None:
    stack.register_base(models.base.path, "org/tiny")
    stack.push(models.adapter.path, "admin", "tiny-lora", "org/tiny")
    job_id = stack.submit("export", {"adapter": "admin/tiny-lora", "dtype": "float16"})
    Worker(stack.settings, sessions=stack.sessions, store=stack.store).run(once=True)
    job = stack.job(job_id)
    assert job.status == "succeeded", job.error
    # outputs expire after LOREG_JOB_OUTPUTS_EXPIRE_HOURS (default 7 days)
    assert job.outputs_expire_at is not None and job.finished_at is not None
    assert job.outputs_expire_at - job.finished_at == timedelta(
        hours=stack.settings.job_outputs_expire_hours
    )
    out = stack.download_outputs(job_id, tmp_path / "out")
    assert {p.name for p in out.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    got = load_file(str(out / "adapter_model.safetensors"))
    src = load_file(str(models.adapter.path / "adapter_model.safetensors"))
    assert set(got) == set(src)
    for k, v in got.items():
        assert v.dtype == torch.float16
        torch.testing.assert_close(v, src[k].half())
    PeftModel.from_pretrained(load_model(models.base.path), str(out))
