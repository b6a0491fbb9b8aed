"""GPU check: merge the synthetic benchmark checkpoint on ``cuda`` and on ``cpu``, compare.

Builds the same synthetic Llama-shaped float16 checkpoint and rank-16 adapter as
``bench/merge.py`` (nothing downloaded), merges it with ``loreg.merge.stream.merge_checkpoint``
once per device, checks every output tensor agrees within float16 tolerance, and prints both
times. On a machine without CUDA it prints a note and exits 0.

    .venv/bin/python bench/gpu_check.py              # 1 GB
    .venv/bin/python bench/gpu_check.py --size 0.25  # smaller
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, default=1.0, help="checkpoint size in GB")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine; nothing to compare (exit 0)")
        return 0

    from merge import build
    from safetensors import safe_open

    from loreg.merge.stream import merge_checkpoint

    root = Path(tempfile.mkdtemp(prefix="loreg-gpucheck-", dir=args.dir))
    base, adapter, total = build(root, args.size)
    print(
        f"checkpoint: {total / 1e9:.2f} GB float16 at {base}; "
        f"device: {torch.cuda.get_device_name(0)}"
    )
    times: dict[str, float] = {}
    outs: dict[str, Path] = {}
    for device in ("cuda", "cpu", "cuda"):  # cuda twice: the first run includes CUDA init
        out = root / f"out-{device}-{len(times)}"
        t0 = time.perf_counter()
        result = merge_checkpoint(base, [(adapter, 1.0)], out, device=device)
        times[f"{device}#{len(times)}"] = time.perf_counter() - t0
        outs[device] = out
        assert result.changed_tensors > 0
    worst = 0.0
    n = 0
    for shard in sorted(outs["cpu"].glob("*.safetensors")):
        with (
            safe_open(str(shard), framework="pt") as a,
            safe_open(str(outs["cuda"] / shard.name), framework="pt") as b,
        ):
            for key in a.keys():  # noqa: SIM118 - safe_open is not iterable
                x, y = a.get_tensor(key).float(), b.get_tensor(key).float()
                torch.testing.assert_close(x, y, rtol=1e-2, atol=1e-3, msg=key)
                worst = max(worst, float((x - y).abs().max()))
                n += 1
    for name, seconds in times.items():
        print(f"  {name:8s} {seconds:8.2f} s  ({total / seconds / 1e9:.2f} GB/s)")
    cpu = times["cpu#1"]
    gpu = times["cuda#2"]
    print(
        f"agree: {n} tensors, max |cuda - cpu| = {worst:.3g}; cpu/cuda time ratio {cpu / gpu:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
