"""``export``: one version as a PEFT folder, optionally cast to another float dtype.

Adapters are small (megabytes), so the tensors are cast in memory; non-tensor files
(``adapter_config.json``, README) are copied as they are. The result loads with
``PeftModel.from_pretrained``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from registry.worker.context import JobContext, Outcome

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def export_folder(src: Path, dst: Path, dtype: str | None) -> None:
    tmp = dst.with_name(dst.name + ".incomplete")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src)
        out = tmp / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".safetensors" and dtype is not None:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                tensors = {}
                for k in f.keys():  # noqa: SIM118 - safe_open is not iterable
                    t = f.get_tensor(k)
                    tensors[k] = t.to(DTYPES[dtype]) if t.is_floating_point() else t
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(out),
                      metadata={**metadata, "format": metadata.get("format", "pt")})
        else:
            shutil.copyfile(path, out)
    tmp.rename(dst)


def run(ctx: JobContext) -> Outcome:
    (inp,) = ctx.params["inputs"]
    dtype = ctx.params.get("dtype")
    ctx.progress(0.05, "downloading adapter", force=True)
    src = ctx.fetch_version(int(inp["version_id"]), "adapter")
    ctx.check_cancel()
    ctx.progress(0.5, f"casting to {dtype}" if dtype else "copying", force=True)
    out = ctx.workdir / "out"
    export_folder(src, out, dtype)
    return Outcome(result={"version": inp["resolved"], "dtype": dtype}, output_dir=out)
