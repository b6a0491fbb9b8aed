"""Streaming merge of one or more LoRA adapters into a base checkpoint.

One sequential pass over the base: a reader thread pulls each tensor's bytes with ranged
reads (hashing them for the base fingerprint as they pass), the calling thread merges the
tensors the adapters touch (on the GPU when there is one) and streams every output tensor
into safetensors shards whose headers were written first. Untouched tensors go through in
16 MiB chunks without conversion (or cast chunk by chunk when a dtype is asked for), so peak
memory is a few chunks plus the largest *merged* tensor in float32, not the model.

The output folder is built as ``OUT.incomplete`` and renamed to ``OUT`` only when every file
is complete and, if one was expected, the base fingerprint matched.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from loreg.errors import Incompatible, InvalidInput
from loreg.formats.base import FingerprintBuilder
from loreg.merge.compute import TensorMerger
from loreg.merge.device import resolve_device
from loreg.merge.options import MethodOptions
from loreg.merge.pipeline import BaseReader, WriterThread
from loreg.merge.plan import TensorPlan, check_sources, new_vocab_size, plan_merge
from loreg.merge.side_files import copy_side_files, read_config
from loreg.merge.sources import (
    AdapterSource,
    StagedDir,
    abandon,
    open_base,
    output_dtype,
    return_large_frees_to_os,
    tensor_bytes,
    torch_dtype,
)
from loreg.merge.writer import (
    DEFAULT_SHARD_BYTES,
    OutputFile,
    ShardedSafetensorsWriter,
)

ProgressFn = Callable[[int, int, str], None]
"""``progress(bytes_done, bytes_total, message)``, called after each tensor."""
CancelFn = Callable[[], None]
"""Called between tensors; raises (any exception) to stop the merge and discard the output."""


class FingerprintMismatch(Incompatible):
    """The base's bytes are not the base the caller expected (wrong or corrupted checkpoint)."""

    code: ClassVar[str] = "fingerprint_mismatch"


@dataclass(frozen=True)
class MergeResult:
    """What a merge wrote: every output file with its size and sha256, and the base fingerprint."""

    out_dir: Path
    files: list[OutputFile]
    fingerprint: str | None  # "sha256:<hex>" of the base, computed in the same pass
    tensors: int
    changed_tensors: int
    bytes_read: int
    device: str
    method: str
    seconds: float

    @property
    def bytes_written(self) -> int:
        return sum(f.size for f in self.files)


def _cast_chunk(view: memoryview, src: str, dst: str) -> memoryview:
    t = torch.frombuffer(view, dtype=torch_dtype(src))
    return tensor_bytes(t.to(torch_dtype(dst)))


def _normalise_fingerprint(fp: str) -> str:
    fp = fp.strip().lower()
    return fp if fp.startswith("sha256:") else "sha256:" + fp


def merge_checkpoint(
    base_dir: Path,
    adapters: Sequence[tuple[Path, float]],
    out_dir: Path,
    *,
    options: MethodOptions = MethodOptions(),
    dtype: str | None = None,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    device: str = "auto",
    expected_fingerprint: str | None = None,
    compute_fingerprint: bool = True,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> MergeResult:
    """Merge ``adapters`` (folder, weight) into the checkpoint at ``base_dir``; write ``out_dir``.

    With one adapter of weight 1 the result is PEFT's ``merge_and_unload()``. With several,
    ``options`` says how their dense deltas combine (see ``loreg.merge.methods``). ``dtype``
    (float16, bfloat16, float32) casts every floating tensor; by default merged tensors keep
    the base's dtype and untouched ones are copied byte for byte. ``expected_fingerprint``
    (``sha256:HEX``) is checked against the base's bytes in the same pass; on a mismatch
    nothing is left at ``out_dir``.
    ``out_dir`` must not exist or be an empty folder.
    """
    started = time.monotonic()
    dev = resolve_device(device)
    return_large_frees_to_os()
    with _compute_threads(dev):
        return _merge(
            base_dir,
            adapters,
            out_dir,
            options=options,
            dtype=dtype,
            max_shard_bytes=max_shard_bytes,
            dev=dev,
            expected_fingerprint=expected_fingerprint,
            compute_fingerprint=compute_fingerprint,
            progress=progress,
            should_cancel=should_cancel,
            started=started,
        )


@contextlib.contextmanager
def _compute_threads(dev: torch.device) -> Iterator[None]:
    """Run torch single-threaded on the CPU path for the merge's duration.

    The merge's ops are memory-bound and come in cache-sized blocks; the other cores are
    busy reading, hashing and writing. Intra-op threads would only contend with those
    (measured: several times slower on two cores). The caller's setting is restored.
    """
    if dev.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _merge(
    base_dir: Path,
    adapters: Sequence[tuple[Path, float]],
    out_dir: Path,
    *,
    options: MethodOptions,
    dtype: str | None,
    max_shard_bytes: int,
    dev: torch.device,
    expected_fingerprint: str | None,
    compute_fingerprint: bool,
    progress: ProgressFn | None,
    should_cancel: CancelFn | None,
    started: float,
) -> MergeResult:
    if not adapters:
        raise InvalidInput("merge needs at least one adapter")
    out_st_dtype = output_dtype(dtype)
    if expected_fingerprint is not None:
        compute_fingerprint = True
    base = open_base(Path(base_dir))
    sources = [AdapterSource(Path(p)) for p, _ in adapters]
    weights = [float(w) for _, w in adapters]
    staged: StagedDir | None = None
    reader: BaseReader | None = None
    writer: ShardedSafetensorsWriter | None = None
    wthread: WriterThread | None = None
    try:
        manifest = check_sources(base, sources)
        plans = plan_merge(base, sources, out_st_dtype, manifest, weights, options.method)
        config = read_config(base.path)
        new_vocab = new_vocab_size(plans, config) if config is not None else None
        staged = StagedDir(Path(out_dir))
        writer = ShardedSafetensorsWriter(
            staged.path, [p.out for p in plans], max_shard_bytes=max_shard_bytes
        )
        merger = TensorMerger(sources, weights, options, dev)
        reader = BaseReader(base, plans, hash_bytes=compute_fingerprint, pin=False)
        reader.start()
        wthread = WriterThread(writer)
        wthread.start()
        changed = _stream(reader, wthread, merger, base.total_bytes, progress, should_cancel)
        reader.join()
        wthread.close()
        wthread = None
        files = writer.finish()
        fingerprint = None
        if compute_fingerprint:
            fingerprint = _fingerprint(reader, base.path, expected_fingerprint)
        files += copy_side_files(base.path, sources, staged.path, config, new_vocab, out_st_dtype)
        final = staged.commit()
    except BaseException:
        if reader is not None:
            reader.halt()
        if wthread is not None:
            with contextlib.suppress(BaseException):
                wthread.close()
        abandon(staged, writer)
        raise
    finally:
        for src in sources:
            src.close()
    return MergeResult(
        out_dir=final,
        files=sorted(files, key=lambda f: f.path),
        fingerprint=fingerprint,
        tensors=len(plans),
        changed_tensors=changed,
        bytes_read=base.total_bytes,
        device=str(dev),
        method=options.method,
        seconds=time.monotonic() - started,
    )


def _stream(
    reader: BaseReader,
    wthread: WriterThread,
    merger: TensorMerger,
    total: int,
    progress: ProgressFn | None,
    should_cancel: CancelFn | None,
) -> int:
    """Every tensor from the reader to the writer, computed or copied (cast on the way
    when asked); the number computed."""
    done = 0
    changed = 0
    for item in reader:
        plan: TensorPlan = item[1]
        if item[0] == "tensor":
            if should_cancel is not None:
                should_cancel()
            out = merger.compute(plan, item[2])
            wthread.submit(plan.info.name, tensor_bytes(out))
            changed += 1
            done += plan.info.nbytes
        else:
            _, _, buf, n, last = item
            if buf is not None:
                view = memoryview(buf)[:n]
                if plan.cast:
                    wthread.submit(
                        plan.info.name, _cast_chunk(view, plan.info.dtype, plan.out.dtype)
                    )
                    reader.free.put(buf)
                else:
                    wthread.submit(plan.info.name, view, functools.partial(reader.free.put, buf))
                done += n
            if not last:
                continue
            if should_cancel is not None:
                should_cancel()
        if progress is not None:
            progress(done, total, plan.info.name)
    return changed


def _fingerprint(reader: BaseReader, base_dir: Path, expected: str | None) -> str:
    """The base's fingerprint from the hashes the reader took; ``FingerprintMismatch``
    when it is not the one expected."""
    builder = FingerprintBuilder()
    for name, st_dtype, shape, hexdigest in reader.records:
        builder.add(name, st_dtype, shape, hexdigest)
    fingerprint = builder.fingerprint()
    if expected is not None and fingerprint != _normalise_fingerprint(expected):
        raise FingerprintMismatch(
            f"base at {base_dir} has fingerprint {fingerprint}, expected"
            f" {_normalise_fingerprint(expected)}; nothing was written",
            details={"expected": expected, "actual": fingerprint},
        )
    return fingerprint


__all__ = [
    "CancelFn",
    "FingerprintMismatch",
    "MergeResult",
    "ProgressFn",
    "merge_checkpoint",
]
