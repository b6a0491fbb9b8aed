"""Export one adapter as a PEFT folder, optionally cast to another floating dtype.

The tensors stream through the writer one at a time (adapters are small, but the same code
path keeps memory flat for large embedding adapters too); non-floating tensors are copied
unchanged; adapter_config.json and other small files (README.md, tokenizer files) are copied
as they are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from loreg.formats.safetensors import read_header_file
from loreg.merge.sources import (
    FLOAT_DTYPES,
    AdapterSource,
    StagedDir,
    abandon,
    copy_file_hashed,
    output_dtype,
    tensor_bytes,
    torch_dtype,
)
from loreg.merge.writer import OutputFile, ShardedSafetensorsWriter, TensorSpec, adapter_writer


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    files: list[OutputFile]
    dtype: str  # safetensors dtype of the floating tensors written
    seconds: float


def export_adapter(adapter_dir: Path, out_dir: Path, *, dtype: str | None = None) -> ExportResult:
    """Write ``adapter_dir`` to ``out_dir`` as a PEFT folder, floats cast to ``dtype``."""
    started = time.monotonic()
    target = output_dtype(dtype)
    src = AdapterSource(Path(adapter_dir))
    staged: StagedDir | None = None
    writer: ShardedSafetensorsWriter | None = None
    try:
        src.require_applicable("export")
        infos = sorted(src.desc.tensors.values(), key=lambda i: i.start)
        specs = [
            TensorSpec(i.name, target if target and i.dtype in FLOAT_DTYPES else i.dtype, i.shape)
            for i in infos
        ]
        staged = StagedDir(Path(out_dir))
        # the source header's metadata is kept, as a plain copy would keep it
        writer = adapter_writer(staged.path, specs, metadata=read_header_file(src.weights).metadata)
        for info, spec in zip(infos, specs, strict=True):
            t = src.tensor(info.name)
            if spec.dtype != info.dtype:
                t = t.to(torch_dtype(spec.dtype))
            writer.write(spec.name, tensor_bytes(t))
        files = writer.finish()
        for p in sorted(src.path.iterdir()):
            if (
                p.is_file()
                and not p.name.startswith(".")
                and p.suffix not in (".safetensors", ".bin")
            ):
                files.append(copy_file_hashed(p, staged.path / p.name))
        final = staged.commit()
    except BaseException:
        abandon(staged, writer)
        raise
    finally:
        src.close()
    return ExportResult(
        out_dir=final,
        files=sorted(files, key=lambda f: f.path),
        dtype=target or src.desc.dtype,
        seconds=time.monotonic() - started,
    )
