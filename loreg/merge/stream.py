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
import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from loreg.errors import Incompatible, InvalidInput
from loreg.formats.base import FingerprintBuilder, manifest_from_headers
from loreg.formats.compat import bind, check_compatibility, checkpoint_names
from loreg.formats.targets import BoundParameter, Piece
from loreg.formats.types import BaseManifest, LoraModule, TensorInfo, TokenModule
from loreg.merge.delta import (
    bias_delta,
    delta_weight,
    dora_merge,
    from_weight_layout,
    implied_weight_shape,
    to_weight_layout,
)
from loreg.merge.device import resolve_device, to_device, to_host
from loreg.merge.methods import combine_deltas, tensor_seed, truncated_svd
from loreg.merge.options import EXACT_METHODS, MethodOptions
from loreg.merge.sources import (
    CONFIG_DTYPE_NAMES,
    COPY_CHUNK,
    FLOAT_DTYPES,
    AdapterSource,
    BaseCheckpoint,
    StagedDir,
    abandon,
    copy_file_hashed,
    is_weight_file,
    open_base,
    output_dtype,
    pread_into,
    read_tensor,
    return_large_frees_to_os,
    tensor_bytes,
    torch_dtype,
)
from loreg.merge.writer import (
    DEFAULT_SHARD_BYTES,
    BytesLike,
    OutputFile,
    ShardedSafetensorsWriter,
    TensorSpec,
    json_bytes,
    write_bytes_atomic,
)

ProgressFn = Callable[[int, int, str], None]
"""``progress(bytes_done, bytes_total, message)``, called after each tensor."""
CancelFn = Callable[[], None]
"""Called between tensors; raises (any exception) to stop the merge and discard the output."""

TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "tokenizer.model",
        "spiece.model",
        "sentencepiece.bpe.model",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "chat_template.jinja",
        "chat_template.json",
    }
)
_QUEUE_DEPTH = 2  # items between stages: bounds memory to a few tensors in flight
_BLOCK_ELEMENTS = 1 << 19  # rows per block: ~2 MiB of float32, fits in cache
_EXPERT_CACHE = 8  # parameter LoRA factors kept between the tensors of one layer's experts


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


@dataclass
class _Plan:
    file: str
    info: TensorInfo
    out: TensorSpec
    replace: tuple[int, str] | None = None  # (adapter index, adapter key)
    loras: list[tuple[int, LoraModule]] = field(default_factory=list)
    biases: list[tuple[int, LoraModule]] = field(default_factory=list)
    experts: list[tuple[int, BoundParameter, Piece]] = field(default_factory=list)
    tokens: list[tuple[int, TokenModule]] = field(default_factory=list)

    @property
    def computed(self) -> bool:
        """Does this tensor need the whole tensor in memory (merged or replaced)?"""
        return (
            self.replace is not None
            or bool(self.loras)
            or bool(self.biases)
            or bool(self.experts)
            or bool(self.tokens)
        )

    @property
    def cast(self) -> bool:
        return self.out.dtype != self.info.dtype


def _check_sources(
    base: BaseCheckpoint, adapters: Sequence[AdapterSource]
) -> BaseManifest:
    """Validate's compatibility check for every adapter, before a byte is written.

    The manifest comes from the base's headers and config.json (tied weights, model type),
    exactly as ``loreg validate`` reads it; any problem refuses the merge with that report.
    """
    manifest = manifest_from_headers(base.path, base.headers)
    for src in adapters:
        report = check_compatibility(src.desc, manifest)
        if not report.ok:
            text = report.format()
            if len(text) > 6000:
                text = text[:6000] + "\n  ..."
            raise Incompatible(
                f"{src.path} does not fit the base at {base.path}; nothing was written:\n{text}",
                details=report.to_dict(),
            )
    return manifest


def _plan(
    base: BaseCheckpoint,
    adapters: Sequence[AdapterSource],
    out_dtype: str | None,
    manifest: BaseManifest,
    weights: Sequence[float],
    method: str,
) -> list[_Plan]:
    plans: dict[str, _Plan] = {}
    for rel, info in base.order:
        dtype = out_dtype if out_dtype is not None and info.dtype in FLOAT_DTYPES else info.dtype
        plans[info.name] = _Plan(rel, info, TensorSpec(info.name, dtype, info.shape))
    aliases = manifest.aliases
    problems: list[dict[str, Any]] = []
    for i, src in enumerate(adapters):
        stored_as = checkpoint_names(src.desc, manifest)  # names the checkpoint renamed

        direct = {t for sm in src.desc.saved_modules.values() for t in sm.tensors}
        saved_items = [
            (tname, key, saved.shapes[tname], saved.origin)
            for saved in src.desc.saved_modules.values()
            for tname, key in saved.tensors.items()
        ]
        # Tied copies last: PEFT loads the output layer's copy of a replaced embedding into
        # the one shared tensor after the embedding's own, so it is the one that counts.
        for tname, key, shape, origin in sorted(saved_items, key=lambda t: t[0] in aliases):
            target = aliases.get(tname)
            tied_copy = (
                plans.get(stored_as.get(tname, tname)) is None
                and origin == "base_layer"
                and target in direct
                and shape == src.desc.saved_shape(target)
            )
            stored = target if tied_copy and target else stored_as.get(tname, tname)
            plan = plans.get(stored)
            if plan is None:
                problems.append(
                    {"adapter": str(src.path), "tensor": tname, "problem": "not in base"}
                )
                continue
            if plan.replace is not None and not (tied_copy and plan.replace[0] == i):
                raise Incompatible(
                    f"{plan.info.name} is replaced by more than one adapter's modules_to_save;"
                    " merge those adapters separately",
                    details={"tensor": plan.info.name},
                )
            plan.replace = (i, key)
            plan.out = TensorSpec(plan.info.name, plan.out.dtype, tuple(shape))
        for module in src.desc.modules.values():
            if module.kind == "parameter":
                continue
            plan = plans.get(stored_as.get(module.base_weight, module.base_weight))
            if plan is None:
                problems.append(
                    {
                        "adapter": str(src.path),
                        "tensor": module.base_weight,
                        "problem": "not in base",
                    }
                )
                continue
            plan.loras.append((i, module))
            if module.bias_key is not None:
                bias = plans.get(stored_as.get(module.base_bias, module.base_bias))
                if bias is None:
                    problems.append(
                        {
                            "adapter": str(src.path),
                            "tensor": module.base_bias,
                            "problem": "lora_bias but the base layer has no bias",
                        }
                    )
                else:
                    bias.biases.append((i, module))
        binding = bind(src.desc, manifest)
        if binding.bound and method not in EXACT_METHODS:
            raise Incompatible(
                f"{src.path} adapts parameters (target_parameters); loreg merges those with"
                f" method linear or cat only, not {method}",
                details={"method": method},
            )
        for bp in binding.bound:
            for piece in bp.stored.pieces:
                plans[piece.tensor].experts.append((i, bp, piece))
        # The input embedding's rows first, then those of the output layer tied to it: the
        # order of PEFT's merge, which writes both into the one tensor.
        for tm in sorted(src.desc.token_modules.values(), key=lambda t: t.name in aliases):
            if weights[i] != 1.0:
                raise Incompatible(
                    f"{src.path} has trainable tokens, which replace embedding rows: it can be"
                    f" merged with weight 1 only, not {weights[i]}",
                    details={"adapter": str(src.path), "weight": weights[i]},
                )
            tname = stored_as.get(tm.base_weight, tm.base_weight)
            plans[aliases.get(tname, tname)].tokens.append((i, tm))
    for plan in plans.values():
        for i, module in plan.loras:
            if plan.info.dtype not in FLOAT_DTYPES:
                problems.append({"tensor": plan.info.name, "problem": f"dtype {plan.info.dtype}"})
            want = implied_weight_shape(module)
            if tuple(plan.out.shape) != want:
                problems.append(
                    {
                        "adapter": str(adapters[i].path),
                        "tensor": plan.info.name,
                        "base_shape": list(plan.out.shape),
                        "lora_shape": list(want),
                    }
                )
        if (plan.experts or plan.tokens) and plan.info.dtype not in FLOAT_DTYPES:
            problems.append({"tensor": plan.info.name, "problem": f"dtype {plan.info.dtype}"})
        if plan.experts and (plan.loras or plan.replace or plan.tokens):
            problems.append(
                {"tensor": plan.info.name, "problem": "parameter LoRA and other changes"}
            )
        if plan.tokens and plan.loras:
            problems.append({"tensor": plan.info.name, "problem": "trainable tokens and LoRA"})
        owners = {i for i, _ in plan.tokens}
        if len(owners) > 1:
            rows = [set(tm.indices) for _, tm in plan.tokens]
            if any(a & b for n, a in enumerate(rows) for b in rows[n + 1 :]):
                raise Incompatible(
                    f"several adapters replace the same rows of {plan.info.name} (trainable"
                    " tokens); PEFT refuses to merge overlapping token ids, and so does loreg",
                    details={"tensor": plan.info.name},
                )
    if problems:
        raise Incompatible(
            f"{len(problems)} adapter tensor(s) do not fit the base", details=problems
        )
    return list(plans.values())


def _new_vocab_size(plans: Sequence[_Plan], config: dict[str, Any]) -> int | None:
    """The vocabulary size after modules_to_save replaced the embeddings with resized ones."""
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int):
        return None
    sizes = {
        p.out.shape[0]
        for p in plans
        if p.replace is not None
        and len(p.info.shape) == 2
        and p.info.shape[0] == vocab
        and p.out.shape[0] != vocab
    }
    if len(sizes) > 1:
        raise Incompatible(f"adapters resize the vocabulary inconsistently: {sorted(sizes)}")
    return sizes.pop() if sizes else None


class _Reader(threading.Thread):
    """Reads the base in plan order into a bounded queue, hashing for the fingerprint."""

    def __init__(
        self,
        base: BaseCheckpoint,
        plans: Sequence[_Plan],
        *,
        hash_bytes: bool,
        pin: bool,
    ) -> None:
        super().__init__(name="loreg-merge-reader", daemon=True)
        self.base = base
        self.plans = plans
        self.hash_bytes = hash_bytes
        self.pin = pin
        self.items: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(_QUEUE_DEPTH + 2):
            self.free.put(bytearray(COPY_CHUNK))
        self.stop = threading.Event()
        self.records: list[tuple[str, str, tuple[int, ...], str]] = []

    def _put(self, item: tuple[Any, ...]) -> None:
        while not self.stop.is_set():
            try:
                self.items.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _buffer(self) -> bytearray:
        while not self.stop.is_set():
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stopped

    def run(self) -> None:
        fds: dict[str, int] = {}
        try:
            for rel in self.base.headers:
                fds[rel] = os.open(self.base.path / rel, os.O_RDONLY)
                if hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(fds[rel], 0, 0, os.POSIX_FADV_SEQUENTIAL)
            for plan in self.plans:
                info = plan.info
                sha = hashlib.sha256() if self.hash_bytes else None
                if plan.computed:
                    tensor = read_tensor(fds[plan.file], info, pin=self.pin)
                    if sha is not None:
                        sha.update(tensor_bytes(tensor))
                        self._record(plan, sha.hexdigest())
                    self._put(("tensor", plan, tensor))
                    continue
                pos, end = info.start, info.end
                if pos == end:
                    if sha is not None:
                        self._record(plan, sha.hexdigest())
                    self._put(("chunk", plan, None, 0, True))
                while pos < end:
                    buf = self._buffer()
                    n = min(len(buf), end - pos)
                    view = memoryview(buf)[:n]
                    pread_into(fds[plan.file], pos, view)
                    if sha is not None:
                        sha.update(view)
                    pos += n
                    if pos == end and sha is not None:
                        self._record(plan, sha.hexdigest())
                    self._put(("chunk", plan, buf, n, pos == end))
            self._put(("done",))
        except _Stopped:
            pass
        except BaseException as e:  # handed to the consumer, which re-raises it
            with contextlib.suppress(_Stopped):
                self._put(("error", e))
        finally:
            for fd in fds.values():
                os.close(fd)

    def _record(self, plan: _Plan, hexdigest: str) -> None:
        self.records.append((plan.info.name, plan.info.dtype, plan.info.shape, hexdigest))

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while True:
            item = self.items.get()
            if item[0] == "done":
                return
            if item[0] == "error":
                raise item[1]
            yield item

    def halt(self) -> None:
        self.stop.set()
        self.join(timeout=10)


class _WriterThread(threading.Thread):
    """Writes (and hashes) output bytes while the next tensor is being read and merged."""

    def __init__(self, writer: ShardedSafetensorsWriter) -> None:
        super().__init__(name="loreg-merge-writer", daemon=True)
        self.writer = writer
        self.items: queue.Queue[tuple[str, BytesLike, Callable[[], None] | None] | None] = (
            queue.Queue(maxsize=_QUEUE_DEPTH)
        )
        self.error: BaseException | None = None

    def submit(self, name: str, data: BytesLike, release: Callable[[], None] | None = None) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.items.put((name, data, release), timeout=0.1)
                return
            except queue.Full:
                continue

    def run(self) -> None:
        while (item := self.items.get()) is not None:
            name, data, release = item
            try:
                if self.error is None:
                    self.writer.write(name, data)
            except BaseException as e:
                self.error = e
            finally:
                if release is not None:
                    release()

    def close(self) -> None:
        """Wait until everything submitted is written; re-raise a write error."""
        self.items.put(None)
        self.join()
        if self.error is not None:
            raise self.error


class _Stopped(Exception):
    pass


class _Merger:
    """The arithmetic for one computed tensor, on ``device``, in float32."""

    def __init__(
        self,
        adapters: Sequence[AdapterSource],
        weights: Sequence[float],
        options: MethodOptions,
        device: torch.device,
    ) -> None:
        self.adapters = adapters
        self.weights = weights
        self.options = options
        self.device = device
        self._experts: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def _load(self, i: int, key: str) -> torch.Tensor:
        return to_device(self.adapters[i].tensor(key), self.device).to(torch.float32)

    def _load_a(self, i: int, m: LoraModule) -> torch.Tensor:
        """lora_A, with AdaLoRA's singular values folded in (``A * E``, row by row)."""
        a = self._load(i, m.a_key)
        if m.e_key is not None:
            a = a * self._load(i, m.e_key).reshape(-1, *([1] * (a.dim() - 1)))
        return a

    def compute(self, plan: _Plan, base: torch.Tensor) -> torch.Tensor:
        if plan.replace is not None:
            i, key = plan.replace
            base = self.adapters[i].tensor(key)
        base = to_device(base, self.device)
        out_dtype = torch_dtype(plan.out.dtype)
        dora = any(m.magnitude_key is not None for _, m in plan.loras)
        if plan.experts:
            out = self._experts_sum(plan, base, out_dtype)
        elif plan.loras and self.options.exact and not dora and not plan.tokens:
            out = self._blocked_sum(plan, base, out_dtype)
        else:
            w = base.to(torch.float32, copy=True)
            if plan.loras:
                self._apply_loras(plan, w)
            for i, module in plan.biases:  # bias tensors are planned apart from weights
                assert module.bias_key is not None
                w.add_(bias_delta(module, self._load(i, module.bias_key)), alpha=self.weights[i])
            for i, tm in plan.tokens:  # PEFT's index_copy: these rows take the new values
                rows = self._load(i, tm.key).to(w.dtype)
                index = torch.tensor(tm.indices, dtype=torch.long, device=w.device)
                w.index_copy_(0, index, rows)
            out = w.to(out_dtype)
        return to_host(out)

    def _expert_factors(
        self, i: int, bp: BoundParameter, expert: int
    ) -> tuple[float, torch.Tensor, torch.Tensor]:
        """``(alpha, left, right)``: expert ``expert``'s delta ``alpha * left @ right`` in the
        parameter's layout (``[out, in]`` when swapped, else ``[in, out]``)."""
        m = bp.module
        key = (i, m.a_key)
        if key not in self._experts:
            # one read per wrapper: the experts of a layer come one tensor after another
            a, b = self._load_a(i, m), self._load(i, m.b_key)
            experts, r = m.num_experts, m.r
            self._experts[key] = (
                a.reshape(experts, r, a.shape[-1]),  # expert e: rows e*r .. e*r+r-1
                b.reshape(b.shape[0], r, experts).permute(2, 0, 1).contiguous(),  # e, e+E, ...
            )
            while len(self._experts) > _EXPERT_CACHE:
                self._experts.pop(next(iter(self._experts)))
        a3, b3 = self._experts[key]
        a_e, b_e = a3[expert], b3[expert]
        alpha = self.weights[i] * m.scale
        return (alpha, b_e, a_e) if bp.swapped else (alpha, a_e.T, b_e.T)

    def _experts_sum(
        self, plan: _Plan, base: torch.Tensor, out_dtype: torch.dtype
    ) -> torch.Tensor:
        """Add parameter-LoRA deltas, one expert at a time (float32 per expert, in place).

        A tensor that is the whole fused parameter ``[E, d1, d2]`` gets every expert's delta;
        a per-expert tensor (``param[e, rows]``) gets the rows of expert ``e``'s delta.
        """
        out = torch.empty(base.shape, dtype=out_dtype, device=base.device)
        if base.numel() == 0:
            return out
        whole = [(i, bp) for i, bp, piece in plan.experts if piece.expert is None]
        if whole and base.dim() == 2:  # a 2-D parameter: one "expert", [out, in]
            block = base.to(torch.float32, copy=True)
            for i, bp in whole:
                alpha, left, right = self._expert_factors(i, bp, 0)
                block.addmm_(left, right, alpha=alpha)
            out.copy_(block)
            return out
        if whole:
            experts = base.shape[0]
            for e in range(experts):
                block = base[e].to(torch.float32, copy=True)
                for i, bp in whole:
                    alpha, left, right = self._expert_factors(i, bp, e)
                    block.addmm_(left, right, alpha=alpha)
                out[e].copy_(block)
            return out
        block = base.to(torch.float32, copy=True)
        for i, bp, piece in plan.experts:
            assert piece.expert is not None and piece.rows is not None
            alpha, left, right = self._expert_factors(i, bp, piece.expert)
            block.addmm_(left[piece.rows[0] : piece.rows[1]], right, alpha=alpha)
        out.copy_(block)
        return out

    def _factors(self, plan: _Plan) -> list[tuple[float, torch.Tensor, torch.Tensor]]:
        """``(alpha, left, right)`` with ``delta = alpha * left @ right`` in W's 2-D layout."""
        factors = []
        for i, m in plan.loras:
            a, b = self._load_a(i, m), self._load(i, m.b_key)
            alpha = self.weights[i] * m.scale
            if m.kind == "conv":
                factors.append((alpha, b.reshape(b.shape[0], -1), a.reshape(a.shape[0], -1)))
            elif m.kind == "embedding" or m.fan_in_fan_out:
                factors.append((alpha, a.T, b.T))
            else:
                factors.append((alpha, b, a))
        return factors

    def _blocked_sum(self, plan: _Plan, base: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        """``W + sum alpha_i * left_i @ right_i``, a block of rows at a time.

        Each block is converted to float32, updated in place and cast to the output dtype
        while it is still in cache: no float32 copy of the whole weight, no dense delta.
        """
        out = torch.empty(base.shape, dtype=out_dtype, device=base.device)
        if base.numel() == 0:
            return out
        src2d = base.reshape(base.shape[0], -1)
        out2d = out.view(out.shape[0], -1)
        factors = self._factors(plan)
        step = max(1, _BLOCK_ELEMENTS // max(1, src2d.shape[1]))
        if base.device.type != "cpu":
            step = src2d.shape[0]  # one block: the GPU has the bandwidth, not the cache
        for start in range(0, src2d.shape[0], step):
            stop = min(start + step, src2d.shape[0])
            block = src2d[start:stop].to(torch.float32, copy=True)
            for alpha, left, right in factors:
                block.addmm_(left[start:stop], right, alpha=alpha)
            out2d[start:stop].copy_(block)
        return out

    def _apply_loras(self, plan: _Plan, w: torch.Tensor) -> None:
        shape = tuple(w.shape)
        deltas: list[torch.Tensor] = []
        for i, m in plan.loras:
            delta = delta_weight(m, self._load_a(i, m), self._load(i, m.b_key), shape)
            if m.magnitude_key is not None:
                mag = self._load(i, m.magnitude_key)
                delta = dora_merge(w, delta, mag, m.kind, fan_in_fan_out=m.fan_in_fan_out) - w
            deltas.append(delta)
        weights = [self.weights[i] for i, _ in plan.loras]
        generator = torch.Generator().manual_seed(tensor_seed(self.options.seed, plan.info.name))
        combined = combine_deltas(deltas, weights, self.options, generator=generator)
        if self.options.method == "svd":
            m0 = plan.loras[0][1]
            rank = self.options.svd_rank or max(m.r for _, m in plan.loras)
            matrix = from_weight_layout(combined, m0.kind, fan_in_fan_out=m0.fan_in_fan_out)
            b, a = truncated_svd(matrix, rank, clamp=self.options.svd_clamp)
            combined = to_weight_layout(
                b @ a, m0.kind, fan_in_fan_out=m0.fan_in_fan_out, weight_shape=shape
            )
        w.add_(combined)


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
    reader: _Reader | None = None
    writer: ShardedSafetensorsWriter | None = None
    wthread: _WriterThread | None = None
    try:
        manifest = _check_sources(base, sources)
        plans = _plan(base, sources, out_st_dtype, manifest, weights, options.method)
        config = _read_config(base.path)
        new_vocab = _new_vocab_size(plans, config) if config is not None else None
        staged = StagedDir(Path(out_dir))
        writer = ShardedSafetensorsWriter(
            staged.path, [p.out for p in plans], max_shard_bytes=max_shard_bytes
        )
        merger = _Merger(sources, weights, options, dev)
        reader = _Reader(base, plans, hash_bytes=compute_fingerprint, pin=False)
        reader.start()
        wthread = _WriterThread(writer)
        wthread.start()
        total = base.total_bytes
        done = 0
        changed = 0
        for item in reader:
            plan: _Plan = item[1]
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
                        wthread.submit(
                            plan.info.name, view, functools.partial(reader.free.put, buf)
                        )
                    done += n
                if not last:
                    continue
                if should_cancel is not None:
                    should_cancel()
            if progress is not None:
                progress(done, total, plan.info.name)
        reader.join()
        wthread.close()
        wthread = None
        files = writer.finish()
        fingerprint = None
        if compute_fingerprint:
            builder = FingerprintBuilder()
            for name, st_dtype, shape, hexdigest in reader.records:
                builder.add(name, st_dtype, shape, hexdigest)
            fingerprint = builder.fingerprint()
            if expected_fingerprint is not None and fingerprint != _normalise_fingerprint(
                expected_fingerprint
            ):
                raise FingerprintMismatch(
                    f"base at {base.path} has fingerprint {fingerprint}, expected"
                    f" {_normalise_fingerprint(expected_fingerprint)}; nothing was written",
                    details={"expected": expected_fingerprint, "actual": fingerprint},
                )
        files += _copy_side_files(base.path, sources, staged.path, config, new_vocab, out_st_dtype)
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
        bytes_read=total,
        device=str(dev),
        method=options.method,
        seconds=time.monotonic() - started,
    )


def _read_config(base_dir: Path) -> dict[str, Any] | None:
    path = base_dir / "config.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidInput(f"{path} is not valid JSON: {e}") from None
    return doc if isinstance(doc, dict) else None


def _copy_side_files(
    base_dir: Path,
    sources: Sequence[AdapterSource],
    out: Path,
    config: dict[str, Any] | None,
    new_vocab: int | None,
    out_dtype: str | None,
) -> list[OutputFile]:
    """config.json (updated), generation config, tokenizer and other non-weight base files.

    Tokenizer files come from the first adapter folder that has any (an adapter that grew
    the vocabulary ships the tokenizer that knows the new tokens), else from the base.
    """
    files: dict[str, Path] = {
        p.name: p
        for p in sorted(base_dir.iterdir())
        if p.is_file() and not p.name.startswith(".") and not is_weight_file(p.name)
    }
    for src in sources:
        tokenizer = {
            p.name: p for p in src.path.iterdir() if p.is_file() and p.name in TOKENIZER_FILES
        }
        if tokenizer:
            files = {n: p for n, p in files.items() if n not in TOKENIZER_FILES}
            files.update(tokenizer)
            break
    written: list[OutputFile] = []
    for name, path in sorted(files.items()):
        if name == "config.json" and config is not None and (new_vocab or out_dtype):
            doc = dict(config)
            if new_vocab is not None:
                doc["vocab_size"] = new_vocab
            if out_dtype is not None:
                for key in ("dtype", "torch_dtype"):
                    if key in doc:
                        doc[key] = CONFIG_DTYPE_NAMES[out_dtype]
            written.append(write_bytes_atomic(out / name, json_bytes(doc)))
        else:
            written.append(copy_file_hashed(path, out / name))
    return written


__all__ = [
    "CancelFn",
    "FingerprintMismatch",
    "MergeResult",
    "ProgressFn",
    "merge_checkpoint",
]
