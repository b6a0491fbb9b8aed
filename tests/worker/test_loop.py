"""The worker loop with real handlers on SQLite + a local store: merge results equal PEFT's,
a base whose bytes do not match its fingerprint fails clearly, cancellation stops a running
merge and leaves nothing behind, and a stopping worker hands its job back."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from safetensors.torch import load_file

from loreg.db.ops import WorkerHeartbeat
from loreg.logging import JsonFormatter, job_id_var
from loreg.services import jobs
from loreg.worker.context import JobContext, Outcome
from loreg.worker.loop import Worker
from tests.factories import load_model
from tests.worker.conftest import Models, Stack


def merged_state(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def peft_reference(models: Models) -> dict[str, torch.Tensor]:
    model = load_model(models.base.path)
    merged = PeftModel.from_pretrained(model, str(models.adapter.path)).merge_and_unload()
    return {k: v.detach().clone() for k, v in merged.state_dict().items()}


def assert_matches_peft(out_dir: Path, models: Models) -> None:
    got = merged_state(out_dir)
    want = peft_reference(models)
    assert got, "no tensors in the output"
    for name, tensor in got.items():
        torch.testing.assert_close(tensor, want[name], rtol=1e-5, atol=1e-6, msg=name)
    model = load_model(out_dir)  # transformers loads the folder as it is
    ids = torch.tensor([[1, 5, 9, 33]])
    peft = PeftModel.from_pretrained(load_model(models.base.path), str(models.adapter.path))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, peft(input_ids=ids).logits,
                                   rtol=1e-5, atol=1e-5)


def seed(stack: Stack, models: Models, *, lie: bool = False) -> None:
    stack.register_base(models.base.path, "org/tiny",
                        fingerprint_of=models.other.path if lie else None)
    stack.push(models.adapter.path, "admin", "tiny-lora", "org/tiny")


def worker(stack: Stack, **kw: Any) -> Worker:
    return Worker(stack.settings, sessions=stack.sessions, store=stack.store, **kw)


def test_merge_job_equals_peft_and_uses_cache(stack: Stack, models: Models,
                                              tmp_path: Path) -> None:
    seed(stack, models)
    job_id = stack.submit("merge", {"base": "org/tiny", "adapters": ["admin/tiny-lora"],
                                    "max_shard_bytes": 1 << 20})
    w = worker(stack)
    assert w.run(once=True) == 2  # the push's validation job and the merge
    job = stack.job(job_id)
    assert job.status == "succeeded", job.error
    assert job.attempts == 1 and job.progress == 1.0
    assert job.result is not None and job.result["changed_tensors"] > 0
    paths = {a.path for a in job.artifacts}
    assert "config.json" in paths and any(p.endswith(".safetensors") for p in paths)
    assert not any("incomplete" in p for p in paths)
    assert_matches_peft(stack.download_outputs(job_id, tmp_path / "out"), models)

    # a second merge into the same base reads it from the cache, not the store
    misses = w.cache.misses
    again = stack.submit("merge", {"base": "org/tiny", "adapters": [
        {"ref": "admin/tiny-lora", "weight": 0.5}]})
    assert w.run(once=True) == 1
    assert stack.job(again).status == "succeeded"
    assert w.cache.misses == misses and w.cache.hits >= 1
    # the work folders are gone
    assert not any((stack.settings.home / "worker" / "work").iterdir())


def test_base_with_wrong_fingerprint_fails_clearly(stack: Stack, models: Models) -> None:
    seed(stack, models, lie=True)
    job_id = stack.submit("merge", {"base": "org/tiny", "adapters": ["admin/tiny-lora"]})
    w = worker(stack)
    w.run(once=True)
    job = stack.job(job_id)
    assert job.status == "failed" and job.attempts == 1  # not retried: it cannot succeed
    assert job.error is not None and job.error["code"] == "base_fingerprint_mismatch"
    assert "do not match its recorded fingerprint" in job.error["message"]
    assert "org/tiny" in job.error["message"]
    assert job.artifacts == []
    assert not w.cache.has(job.params["base"]["fingerprint"])  # the bad entry is dropped


def test_cancel_running_merge(stack: Stack, models: Models) -> None:
    seed(stack, models)
    settings = stack.settings.model_copy(update={"worker_test_delay_seconds": 0.2,
                                                 "job_lease_seconds": 3})
    job_id = stack.submit("merge", {"base": "org/tiny", "adapters": ["admin/tiny-lora"]})
    w = Worker(settings, sessions=stack.sessions, store=stack.store, types=["merge"])
    blobs_before = {d for d, _, _ in stack.store.iterate()}
    thread = threading.Thread(target=w.run, kwargs={"once": True})
    thread.start()
    try:
        stack.wait(job_id, lambda j: j.status == "running" and j.progress > 0.2)
        with stack.sessions() as s:
            jobs.cancel(s, stack.admin, job_id)
            s.commit()
        job = stack.wait(job_id, lambda j: j.status != "running", timeout=10)
    finally:
        w.stop()
        thread.join(30)
    assert job.status == "cancelled"
    assert job.artifacts == [] and job.progress < 1.0
    assert {d for d, _, _ in stack.store.iterate()} == blobs_before  # nothing uploaded
    work = stack.settings.home / "worker" / "work"
    assert not any(work.iterdir())  # partial output removed


def test_interrupted_worker_hands_job_back(stack: Stack, models: Models) -> None:
    seed(stack, models)
    settings = stack.settings.model_copy(update={"worker_test_delay_seconds": 0.2})
    job_id = stack.submit("merge", {"base": "org/tiny", "adapters": ["admin/tiny-lora"]})
    w = Worker(settings, sessions=stack.sessions, store=stack.store, types=["merge"])
    thread = threading.Thread(target=w.run)
    thread.start()
    stack.wait(job_id, lambda j: j.status == "running" and j.progress > 0.15)
    w.stop()
    w.interrupt()
    thread.join(30)
    job = stack.job(job_id)
    assert job.status == "queued" and job.error is not None
    assert job.error["code"] == "worker_stopped"


def test_housekeeping_and_job_id_logging_during_a_job(stack: Stack, models: Models) -> None:
    """The lease thread keeps housekeeping going while a handler runs (the heartbeat names
    the job), and log lines made inside the job carry its id."""
    seed(stack, models)
    job_id = stack.submit("export", {"adapter": "admin/tiny-lora"})
    seen: dict[str, Any] = {}

    def slow_export(ctx: JobContext) -> Outcome:
        record = logging.LogRecord("loreg.test", logging.INFO, __file__, 0, "inside", None,
                                   None)
        seen["log"] = json.loads(JsonFormatter().format(record))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with stack.sessions() as s:
                row = s.get(WorkerHeartbeat, ctx.worker_id)
                if row is not None and row.current_job_id == ctx.job_id:
                    seen["heartbeat"] = row.current_job_id
                    break
            time.sleep(0.1)
        return Outcome(result={})

    w = worker(stack, handlers={"export": slow_export})
    w.housekeeping.heartbeat_interval = 0.2
    assert w.run(once=True) == 1
    assert stack.job(job_id).status == "succeeded"
    assert seen["heartbeat"] == job_id
    assert seen["log"]["job_id"] == job_id
    assert job_id_var.get() is None  # reset after the job
