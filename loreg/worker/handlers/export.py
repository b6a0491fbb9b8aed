"""``export``: one version as a PEFT folder, optionally cast to another float dtype.

The merge engine's ``export_adapter`` does the work: tensors stream through its writer,
floating ones cast to ``dtype``; adapter_config.json and the other top-level files are
copied as they are. The result loads with
``PeftModel.from_pretrained``.
"""

from __future__ import annotations

from loreg.merge.export import export_adapter
from loreg.worker.context import JobContext, Outcome


def run(ctx: JobContext) -> Outcome:
    (inp,) = ctx.params["inputs"]
    dtype = ctx.params.get("dtype")
    ctx.progress(0.05, "downloading adapter", force=True)
    src = ctx.fetch_version(int(inp["version_id"]), "adapter")
    ctx.check_cancel()
    ctx.progress(0.5, f"casting to {dtype}" if dtype else "copying", force=True)
    out = ctx.workdir / "out"
    export_adapter(src, out, dtype=dtype)
    return Outcome(result={"version": inp["resolved"], "dtype": dtype}, output_dir=out)
