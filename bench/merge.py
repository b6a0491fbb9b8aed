"""Benchmark: loreg's streaming merge against a plain copy and PEFT's merge_and_unload.

Builds a synthetic Llama-shaped float16 checkpoint (several shards, nothing downloaded) and
a rank-16 LoRA adapter on every linear layer, then runs, each in its own subprocess and on
the same files:

1. ``dd bs=16M`` of every base file (the floor: read the base once, write it once in user
   space; ``cp`` would copy inside the kernel and is no fair floor);
2. PEFT: ``AutoModelForCausalLM.from_pretrained`` + ``PeftModel.from_pretrained`` +
   ``merge_and_unload`` + ``save_pretrained``;
3. loreg: ``loreg.merge.stream.merge_checkpoint`` (fingerprint computed in the same pass).

It prints the wall time of each process (interpreter start and imports included), the time of
the operation itself as measured inside the process (after imports), the CPU time (user +
system, children included: less sensitive than wall time to a busy machine), and the peak RSS the
kernel reports for the process (``ru_maxrss`` from ``wait4``, mapped file pages included),
then the ratios. A second, ~3 GB size shows how peak RSS grows with the model.

    .venv/bin/python bench/merge.py               # 1 GB and 3 GB
    .venv/bin/python bench/merge.py --sizes 1     # 1 GB only
    .venv/bin/python bench/merge.py --no-peft-large  # skip PEFT at the large size
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HIDDEN = 2048
INTERMEDIATE = 5632
HEADS = 16
KV_HEADS = 4
VOCAB = 32000
RANK = 16
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SHARD_BYTES = 400 * 10**6


def _layers_for(gigabytes: float) -> int:
    per_layer = 2 * (
        2 * HIDDEN * HIDDEN
        + 2 * HIDDEN * (HIDDEN // HEADS * KV_HEADS)
        + 3 * HIDDEN * INTERMEDIATE
        + 2 * HIDDEN
    )
    fixed = 2 * (2 * VOCAB * HIDDEN + HIDDEN)
    return max(1, round((gigabytes * 1e9 - fixed) / per_layer + 0.49))


def _module_shapes(layers: int) -> dict[str, tuple[int, int]]:
    kv = HIDDEN // HEADS * KV_HEADS
    out: dict[str, tuple[int, int]] = {}
    for i in range(layers):
        p = f"model.layers.{i}"
        out[f"{p}.self_attn.q_proj"] = (HIDDEN, HIDDEN)
        out[f"{p}.self_attn.k_proj"] = (kv, HIDDEN)
        out[f"{p}.self_attn.v_proj"] = (kv, HIDDEN)
        out[f"{p}.self_attn.o_proj"] = (HIDDEN, HIDDEN)
        out[f"{p}.mlp.gate_proj"] = (INTERMEDIATE, HIDDEN)
        out[f"{p}.mlp.up_proj"] = (INTERMEDIATE, HIDDEN)
        out[f"{p}.mlp.down_proj"] = (HIDDEN, INTERMEDIATE)
    return out


def build(root: Path, gigabytes: float) -> tuple[Path, Path, int]:
    """Write the base checkpoint (shards + index + config) and the adapter; returns sizes."""
    import torch
    from peft import LoraConfig
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    layers = _layers_for(gigabytes)
    base, adapter = root / "base", root / "adapter"
    base.mkdir(parents=True)
    adapter.mkdir(parents=True)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=layers,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        tie_word_embeddings=False,
        dtype="float16",
    )
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(base)
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * 0.02).to(torch.float16)

    names: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    mods = _module_shapes(layers)
    for i in range(layers):
        p = f"model.layers.{i}"
        names.append((f"{p}.input_layernorm.weight", (HIDDEN,)))
        names.append((f"{p}.post_attention_layernorm.weight", (HIDDEN,)))
        names += [(m + ".weight", s) for m, s in mods.items() if m.startswith(p + ".")]
    names += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    total = 0
    weight_map: dict[str, int] = {}
    for name, shape in names:
        nbytes = 2 * int(torch.Size(shape).numel())
        if size + nbytes > SHARD_BYTES and shards[-1]:
            _write_shard(shards, base, save_file)
            shards.append({})
            size = 0
        shards[-1][name] = rand(*shape)
        weight_map[name] = len(shards) - 1
        size += nbytes
        total += nbytes
    _write_shard(shards, base, save_file)
    count = len(shards)
    files = [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
    for i, f in enumerate(files):
        os.replace(base / f"shard-{i}.safetensors", base / f)
    index = {
        "metadata": {"total_size": total},
        "weight_map": {n: files[i] for n, i in weight_map.items()},
    }
    (base / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))

    lora: dict[str, torch.Tensor] = {}
    for mod, (out_f, in_f) in mods.items():
        key = f"base_model.model.{mod}"
        lora[f"{key}.lora_A.weight"] = rand(RANK, in_f)
        lora[f"{key}.lora_B.weight"] = rand(out_f, RANK)
    save_file(lora, adapter / "adapter_model.safetensors", metadata={"format": "pt"})
    LoraConfig(
        r=RANK, lora_alpha=2 * RANK, target_modules=TARGETS, task_type="CAUSAL_LM"
    ).save_pretrained(str(adapter))
    return base, adapter, total


def _write_shard(shards: list[dict[str, Any]], base: Path, save_file: Any) -> None:
    save_file(shards[-1], base / f"shard-{len(shards) - 1}.safetensors", metadata={"format": "pt"})
    shards[-1] = {k: None for k in shards[-1]}  # free the tensors, keep the names


# ---- children: each runs in its own process and prints {"op_s": ...} on its last line ----


def child_copy(base: Path, out: Path) -> None:
    out.mkdir()
    t = time.perf_counter()
    for f in sorted(base.iterdir()):
        subprocess.run(["dd", f"if={f}", f"of={out / f.name}", "bs=16M", "status=none"], check=True)
    print(json.dumps({"op_s": time.perf_counter() - t}))


def child_peft(base: Path, adapter: Path, out: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float16)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(str(out))
    print(json.dumps({"op_s": time.perf_counter() - t}))


def child_loreg(base: Path, adapter: Path, out: Path, device: str, fingerprint: bool) -> None:
    sys.path.insert(0, str(REPO))
    from loreg.merge.stream import merge_checkpoint

    t = time.perf_counter()
    result = merge_checkpoint(
        base, [(adapter, 1.0)], out, device=device, compute_fingerprint=fingerprint
    )
    print(json.dumps({"op_s": time.perf_counter() - t, "fingerprint": result.fingerprint}))


def _measure(args: list[str], out: Path) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["sync"], check=False)
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    stdout = proc.stdout.read()
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{args[0]} failed:\n{stderr.decode()[-3000:]}")
    doc = json.loads(stdout.decode().strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return {
        "wall_s": wall,
        "op_s": doc["op_s"],
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024,
    }


def _row(name: str, m: dict[str, float]) -> str:
    return (
        f"  {name:<6} wall {m['wall_s']:7.2f} s   op {m['op_s']:7.2f} s"
        f"   cpu {m['cpu_s']:7.2f} s   peak RSS {m['rss_mib']:7.0f} MiB"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        kind, rest = sys.argv[1], [Path(a) for a in sys.argv[2:]]
        if kind == "_build":
            _, _, total = build(rest[0], float(sys.argv[3]))
            print(json.dumps({"total": total}))
        elif kind == "_copy":
            child_copy(rest[0], rest[1])
        elif kind == "_peft":
            child_peft(rest[0], rest[1], rest[2])
        else:
            child_loreg(rest[0], rest[1], rest[2], str(sys.argv[5]), kind == "_loreg")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,3", help="checkpoint sizes in GB (default 1,3)")
    parser.add_argument("--no-peft-large", action="store_true", help="skip PEFT above 1.5 GB")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--no-fingerprint-row",
        action="store_true",
        help="also time loreg without computing the base fingerprint (one sha256 pass less)",
    )
    parser.add_argument("--dir", default=tempfile.gettempdir())
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="loreg-bench-", dir=opts.dir))
    results: dict[float, dict[str, dict[str, float]]] = {}
    try:
        for gb in [float(s) for s in opts.sizes.split(",")]:
            work = root / f"{gb:g}gb"
            # built in a child: the parent stays small, so children forked from it do not
            # inherit a large ru_maxrss high-water mark
            built = subprocess.run(
                [sys.executable, __file__, "_build", str(work), str(gb)],
                check=True,
                capture_output=True,
                text=True,
            )
            total = json.loads(built.stdout.strip().splitlines()[-1])["total"]
            base, adapter = work / "base", work / "adapter"
            layers = _layers_for(gb)
            shards = len(list(base.glob("*.safetensors")))
            print(
                f"{total / 1e9:.2f} GB float16 checkpoint, {layers} layers, {shards} shards;"
                f" rank-{RANK} adapter on {len(TARGETS)} linear layers x {layers}",
                flush=True,
            )
            out = work / "out"
            res: dict[str, dict[str, float]] = {}
            res["copy"] = _measure(["_copy", str(base), str(out)], out)
            print(_row("copy", res["copy"]), flush=True)
            if gb <= 1.5 or not opts.no_peft_large:
                res["peft"] = _measure(["_peft", str(base), str(adapter), str(out)], out)
                print(_row("peft", res["peft"]), flush=True)
            res["loreg"] = _measure(["_loreg", str(base), str(adapter), str(out), opts.device], out)
            print(_row("loreg", res["loreg"]), flush=True)
            if opts.no_fingerprint_row:
                nofp = _measure(
                    ["_loreg_nofp", str(base), str(adapter), str(out), opts.device], out
                )
                print(_row("nofp", nofp) + "  (loreg without the base fingerprint)", flush=True)
            lo, cp = res["loreg"], res["copy"]
            line = (
                f"  loreg/copy time {lo['op_s'] / cp['op_s']:.2f}x (op),"
                f" {lo['wall_s'] / cp['wall_s']:.2f}x (wall)"
            )
            if "peft" in res:
                pf = res["peft"]
                line += (
                    f"; loreg/peft time {lo['op_s'] / pf['op_s']:.2f}x (op),"
                    f" {lo['wall_s'] / pf['wall_s']:.2f}x (wall);"
                    f" loreg/peft peak RSS {lo['rss_mib'] / pf['rss_mib']:.2f}x"
                )
            print(line, flush=True)
            results[gb] = res
            shutil.rmtree(work)
        sizes = sorted(results)
        if len(sizes) > 1:
            small, large = results[sizes[0]], results[sizes[-1]]
            grow = large["loreg"]["rss_mib"] / small["loreg"]["rss_mib"] - 1
            msg = f"peak RSS growth {sizes[0]:g} GB -> {sizes[-1]:g} GB: loreg {grow:+.1%}"
            if "peft" in small and "peft" in large:
                msg += f", peft {large['peft']['rss_mib'] / small['peft']['rss_mib'] - 1:+.1%}"
            print(msg)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
