"""Benchmark: loreg's base-model fingerprint against sha256sum and one hashlib pass.

Writes a synthetic sharded safetensors checkpoint (default 1 GiB in 4 shards, BF16
tensors of a Llama-like shape mix) under a temp folder, warms the page cache, then times
over the same files:

- ``loreg``: ``loreg.formats.base.fingerprint`` in a subprocess (its own time and its
  peak RSS, from ``resource.getrusage(RUSAGE_CHILDREN)``);
- ``sha256sum``: coreutils over the shard files;
- ``hashlib``: one Python pass of ``hashlib.sha256`` over the raw bytes (one core's floor).

Prints times, GB/s and ratios; deletes the data unless ``--keep``. Usage::

    .venv/bin/python bench/fingerprint.py [--size-gb 1] [--shards 4] [--repeat 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CHUNK = 1024 * 1024  # the fastest read size for one hashlib pass here (cache-sized)


def write_checkpoint(folder: Path, size_bytes: int, shards: int) -> list[Path]:
    """Sharded BF16 checkpoint of about ``size_bytes``, written in chunks (bounded memory)."""
    hidden, inter = 2048, 5504
    layer_shapes = [
        ("self_attn.q_proj.weight", (hidden, hidden)),
        ("self_attn.k_proj.weight", (hidden // 4, hidden)),
        ("self_attn.v_proj.weight", (hidden // 4, hidden)),
        ("self_attn.o_proj.weight", (hidden, hidden)),
        ("mlp.gate_proj.weight", (inter, hidden)),
        ("mlp.up_proj.weight", (inter, hidden)),
        ("mlp.down_proj.weight", (hidden, inter)),
        ("input_layernorm.weight", (hidden,)),
        ("post_attention_layernorm.weight", (hidden,)),
    ]
    tensors: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (32000, hidden))]
    total = 32000 * hidden * 2
    layer = 0
    while total < size_bytes:
        for suffix, shape in layer_shapes:
            tensors.append((f"model.layers.{layer}.{suffix}", shape))
            total += int(np.prod(shape)) * 2
        layer += 1
    tensors.append(("model.norm.weight", (hidden,)))
    per_shard = total / shards
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[] for _ in range(shards)]
    acc = 0
    for name, shape in tensors:
        groups[min(shards - 1, int(acc // per_shard))].append((name, shape))
        acc += int(np.prod(shape)) * 2
    rng = np.random.default_rng(0)
    weight_map: dict[str, str] = {}
    paths = []
    for i, group in enumerate(g for g in groups if g):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        off = 0
        for name, shape in group:
            n = int(np.prod(shape)) * 2
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
            weight_map[name] = fname
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        path = folder / fname
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            left = off
            while left:
                n = min(CHUNK, left)
                f.write(rng.bytes(n))
                left -= n
        paths.append(path)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    return paths


def hashlib_pass(paths: list[Path]) -> float:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    t = time.perf_counter()
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(view[:n])
    return time.perf_counter() - t


def sha256sum(paths: list[Path]) -> float:
    t = time.perf_counter()
    subprocess.run(["sha256sum", *map(str, paths)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


CHILD = """
import resource, sys, time
from pathlib import Path
from loreg.formats.base import fingerprint
t = time.perf_counter()
m = fingerprint(Path(sys.argv[1]))
secs = time.perf_counter() - t
print(secs, m.fingerprint, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def loreg(folder: Path) -> tuple[float, float, str, int]:
    """(seconds inside the child, wall seconds, fingerprint, the child's peak RSS in KiB)."""
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    wall = time.perf_counter() - t
    secs, fp, rss = out.stdout.split()
    return float(secs), wall, fp, int(rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-gb", type=float, default=1.0)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs per contender")
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: temp)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="loreg-fp-bench-", dir=args.dir))
    try:
        t = time.perf_counter()
        paths = write_checkpoint(folder, int(args.size_gb * 1024**3), args.shards)
        size = sum(p.stat().st_size for p in paths)
        print(
            f"checkpoint: {size / 1e9:.2f} GB in {len(paths)} shards under {folder}"
            f" (written in {time.perf_counter() - t:.1f} s); cpus: {os.cpu_count()}"
        )
        hashlib_pass(paths)  # warm the page cache: every contender reads from memory
        results: dict[str, float] = {}
        results["hashlib (1 pass)"] = min(hashlib_pass(paths) for _ in range(args.repeat))
        results["sha256sum"] = min(sha256sum(paths) for _ in range(args.repeat))
        runs = [loreg(folder) for _ in range(args.repeat)]
        rss_kib = max(r[3] for r in runs)
        children_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        results["loreg fingerprint"] = min(r[0] for r in runs)
        loreg_wall = min(r[1] for r in runs)
        assert len({r[2] for r in runs}) == 1
        base = results["hashlib (1 pass)"]
        print(f"{'contender':<22}{'seconds':>9}{'GB/s':>8}{'vs hashlib':>12}")
        for name, secs in results.items():
            print(f"{name:<22}{secs:>9.2f}{size / 1e9 / secs:>8.2f}{secs / base:>11.2f}x")
        print(
            f"loreg fingerprint process wall time incl. interpreter start: {loreg_wall:.2f} s;"
            f" sha256sum / loreg = {results['sha256sum'] / results['loreg fingerprint']:.2f}x"
        )
        print(
            f"peak RSS of loreg's fingerprint process: {rss_kib / 1024:.0f} MiB"
            f" (getrusage RUSAGE_SELF in the child; RUSAGE_CHILDREN max over all children:"
            f" {children_kib / 1024:.0f} MiB)"
        )
        print(f"fingerprint: {runs[0][2]}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
