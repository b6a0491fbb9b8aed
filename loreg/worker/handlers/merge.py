"""``merge``: base + adapters (with weights) -> merged full weights, as safetensors shards.

The base comes from the worker's cache (downloaded once per fingerprint); the merge engine
streams it one tensor at a time and computes its fingerprint in the same pass, so a base
whose stored bytes are not the ones it was registered with fails here, before anything is
published, and its cache entry is dropped.
"""

from __future__ import annotations

import time
from typing import Any

from loreg.errors import Incompatible
from loreg.merge.options import MethodOptions
from loreg.merge.stream import FingerprintMismatch, merge_checkpoint
from loreg.merge.writer import DEFAULT_SHARD_BYTES
from loreg.worker.context import JobContext, Outcome


class BaseFingerprintMismatch(Incompatible):
    """The base's stored files do not hash to the fingerprint it was registered with."""

    code = "base_fingerprint_mismatch"


def run(ctx: JobContext) -> Outcome:
    p = ctx.params
    base: dict[str, Any] = p["base"]
    inputs: list[dict[str, Any]] = p["inputs"]
    ctx.progress(0.0, "downloading adapters", force=True)
    adapters = [
        (ctx.fetch_version(int(i["version_id"]), f"a{n}"), float(i.get("weight", 1.0)))
        for n, i in enumerate(inputs)
    ]
    ctx.progress(0.05, f"fetching base {base['name']}", force=True)
    files = ctx.base_files(int(base["id"]))
    delay = ctx.settings.worker_test_delay_seconds

    def progress(done: int, total: int, name: str) -> None:
        if delay:
            time.sleep(delay)
        ctx.progress(0.1 + 0.8 * (done / total if total else 1.0), f"merging {name}")

    def should_cancel() -> None:
        ctx.check_cancel()

    out = ctx.workdir / "out"
    mismatch: FingerprintMismatch | None = None
    with ctx.cache.checkout(base["fingerprint"], files, ctx.store) as base_dir:
        ctx.progress(0.1, "merging", force=True)
        try:
            result = merge_checkpoint(
                base_dir,
                adapters,
                out,
                options=MethodOptions.from_params(p),
                dtype=p.get("dtype"),
                max_shard_bytes=int(p.get("max_shard_bytes") or DEFAULT_SHARD_BYTES),
                device=ctx.device,
                expected_fingerprint=base["fingerprint"],
                progress=progress,
                should_cancel=should_cancel,
            )
        except FingerprintMismatch as exc:
            mismatch = exc
    if mismatch is not None:
        ctx.cache.invalidate(base["fingerprint"])
        actual = (mismatch.details or {}).get("actual")
        raise BaseFingerprintMismatch(
            f"the stored files of base model '{base['name']}' do not match its recorded "
            f"fingerprint: expected {base['fingerprint']}, the files hash to {actual}. "
            "It was registered with other weights than were uploaded (or they were "
            "modified); register the base again from the right files. Nothing was written.",
            details={"base": base["name"], "expected": base["fingerprint"], "actual": actual},
        ) from None
    ctx.log(
        "merge.done",
        seconds=round(result.seconds, 3),
        device=result.device,
        tensors=result.tensors,
        changed=result.changed_tensors,
        bytes_written=result.bytes_written,
    )
    return Outcome(
        result={
            "base": base["name"],
            "fingerprint": result.fingerprint,
            "method": result.method,
            "device": result.device,
            "tensors": result.tensors,
            "changed_tensors": result.changed_tensors,
            "bytes_written": result.bytes_written,
            "merge_seconds": round(result.seconds, 3),
            "inputs": [i["resolved"] for i in inputs],
        },
        output_dir=out,
        hashes={f.path: f.sha256 for f in result.files},
    )
