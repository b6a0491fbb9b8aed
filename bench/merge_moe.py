"""Benchmark: merging a LoRA on a mixture of experts' fused expert parameters, loreg vs PEFT.

Builds a synthetic Qwen3-MoE float16 checkpoint (nothing downloaded) in the layout
transformers 5 saves and the Hub serves: every expert stored as its own ``gate_proj`` /
``up_proj`` / ``down_proj`` tensors, so the experts are most of the bytes. The adapter is
what PEFT trains on such a model: rank-16 LoRA on the attention projections plus LoRA on the
fused expert parameters (``target_parameters=["mlp.experts.gate_up_proj",
"mlp.experts.down_proj"]``, rank multiplied by the number of experts). Then, each in its own
subprocess and on the same files:

1. ``dd bs=16M`` of every base file (the floor: read once, write once in user space);
2. PEFT: ``AutoModelForCausalLM.from_pretrained`` (transformers fuses the experts while
   loading) + ``PeftModel.from_pretrained`` + ``merge_and_unload`` + ``save_pretrained``
   (which splits them again);
3. loreg: ``loreg.merge.stream.merge_checkpoint`` (streams the per-expert tensors, adds each
   expert's slice of the delta; fingerprint computed in the same pass).

It prints wall time (interpreter start and imports included), the operation's own time
(measured inside the process, after imports), CPU time (user + system) and peak RSS
(``ru_maxrss`` from ``wait4``) of each process, the ratios, and the largest difference
between PEFT's and loreg's merged tensors (PEFT rounds the float16 delta before adding it,
loreg adds in float32 and rounds once: at most one unit in the last place apart).

    .venv/bin/python bench/merge_moe.py                  # ~1.1 GB checkpoint
    .venv/bin/python bench/merge_moe.py --layers 32      # ~2.6 GB
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
HIDDEN = 1024
EXPERT = 384  # moe_intermediate_size (Qwen3-30B-A3B: 768 for hidden 2048)
EXPERTS = 32
HEADS = 16
KV_HEADS = 4
HEAD_DIM = 64
VOCAB = 32000
RANK = 16
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
SHARD_BYTES = 400 * 10**6


def build(root: Path, layers: int) -> dict[str, Any]:
    """Write the base checkpoint (shards + index + config) and the adapter."""
    import torch
    from peft import LoraConfig
    from safetensors.torch import save_file
    from transformers import Qwen3MoeConfig

    base, adapter = root / "base", root / "adapter"
    base.mkdir(parents=True)
    adapter.mkdir(parents=True)
    # head_dim reaches __post_init__ as an extra kwarg; the typed signature omits it
    config = Qwen3MoeConfig(  # type: ignore[call-arg]
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=4 * EXPERT,
        moe_intermediate_size=EXPERT,
        num_experts=EXPERTS,
        num_experts_per_tok=4,
        num_hidden_layers=layers,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        tie_word_embeddings=False,
        dtype="float16",
    )
    config.architectures = ["Qwen3MoeForCausalLM"]
    config.save_pretrained(base)
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * 0.02).to(torch.float16)

    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    names: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(layers):
        p = f"model.layers.{i}"
        names += [
            (f"{p}.input_layernorm.weight", (HIDDEN,)),
            (f"{p}.post_attention_layernorm.weight", (HIDDEN,)),
            (f"{p}.self_attn.q_proj.weight", (q, HIDDEN)),
            (f"{p}.self_attn.k_proj.weight", (kv, HIDDEN)),
            (f"{p}.self_attn.v_proj.weight", (kv, HIDDEN)),
            (f"{p}.self_attn.o_proj.weight", (HIDDEN, q)),
            (f"{p}.self_attn.q_norm.weight", (HEAD_DIM,)),
            (f"{p}.self_attn.k_norm.weight", (HEAD_DIM,)),
            (f"{p}.mlp.gate.weight", (EXPERTS, HIDDEN)),
        ]
        for e in range(EXPERTS):
            x = f"{p}.mlp.experts.{e}"
            names += [
                (f"{x}.gate_proj.weight", (EXPERT, HIDDEN)),
                (f"{x}.up_proj.weight", (EXPERT, HIDDEN)),
                (f"{x}.down_proj.weight", (HIDDEN, EXPERT)),
            ]
    names += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    shards: list[dict[str, Any]] = [{}]
    size = total = expert_bytes = 0
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
        expert_bytes += nbytes if ".mlp.experts." in name else 0
    _write_shard(shards, base, save_file)
    files = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for i, f in enumerate(files):
        os.replace(base / f"shard-{i}.safetensors", base / f)
    index = {
        "metadata": {"total_size": total},
        "weight_map": {n: files[i] for n, i in weight_map.items()},
    }
    (base / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))

    # PEFT's layout: one ParamWrapper per expert parameter, nested in the order the experts
    # module registered them (gate_up_proj inside, as .base_layer; down_proj outside)
    lora: dict[str, Any] = {}
    re_ = RANK * EXPERTS
    for i in range(layers):
        p = f"base_model.model.model.layers.{i}"
        for m, (out_f, in_f) in {
            "q_proj": (q, HIDDEN),
            "k_proj": (kv, HIDDEN),
            "v_proj": (kv, HIDDEN),
            "o_proj": (HIDDEN, q),
        }.items():
            lora[f"{p}.self_attn.{m}.lora_A.weight"] = rand(RANK, in_f)
            lora[f"{p}.self_attn.{m}.lora_B.weight"] = rand(out_f, RANK)
        lora[f"{p}.mlp.experts.base_layer.lora_A.weight"] = rand(re_, HIDDEN)
        lora[f"{p}.mlp.experts.base_layer.lora_B.weight"] = rand(2 * EXPERT, re_)
        lora[f"{p}.mlp.experts.lora_A.weight"] = rand(re_, EXPERT)
        lora[f"{p}.mlp.experts.lora_B.weight"] = rand(HIDDEN, re_)
    save_file(lora, adapter / "adapter_model.safetensors", metadata={"format": "pt"})
    LoraConfig(
        r=RANK,
        lora_alpha=2 * RANK,
        target_modules=TARGETS,
        target_parameters=PARAMETERS,
        task_type="CAUSAL_LM",
    ).save_pretrained(str(adapter))
    return {"total": total, "experts": expert_bytes, "shards": len(shards)}


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


def child_loreg(base: Path, adapter: Path, out: Path, device: str) -> None:
    sys.path.insert(0, str(REPO))
    from loreg.merge.stream import merge_checkpoint

    t = time.perf_counter()
    result = merge_checkpoint(base, [(adapter, 1.0)], out, device=device)
    print(json.dumps({"op_s": time.perf_counter() - t, "changed": result.changed_tensors}))


def child_compare(a: Path, b: Path) -> None:
    """Largest |a - b| over every tensor, and how many tensors differ from the base at all."""
    from safetensors import safe_open

    def tensors(folder: Path) -> dict[str, Path]:
        out = {}
        for f in folder.glob("*.safetensors"):
            with safe_open(str(f), framework="pt") as h:
                out.update({k: f for k in h.keys()})  # noqa: SIM118
        return out

    ta, tb = tensors(a), tensors(b)
    assert set(ta) == set(tb), set(ta) ^ set(tb)
    worst = 0.0
    for name in ta:
        with (
            safe_open(str(ta[name]), framework="pt") as ha,
            safe_open(str(tb[name]), framework="pt") as hb,
        ):
            x, y = ha.get_tensor(name).float(), hb.get_tensor(name).float()
        worst = max(worst, float((x - y).abs().max()))
    print(json.dumps({"tensors": len(ta), "max_abs_diff": worst}))


def _compare(a: Path, b: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "_compare", str(a), str(b)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _measure_rusage(args: list[str], out: Path, keep: bool = False) -> dict[str, Any]:
    """Run a child and take its CPU time and peak RSS from ``wait4``."""
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["sync"], check=False)
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{args[0]} failed:\n{stderr.decode()[-3000:]}")
    doc = json.loads(stdout.decode().strip().splitlines()[-1])
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return {
        **doc,
        "wall_s": wall,
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
        kind, rest = sys.argv[1], sys.argv[2:]
        if kind == "_build":
            print(json.dumps(build(Path(rest[0]), int(rest[1]))))
        elif kind == "_copy":
            child_copy(Path(rest[0]), Path(rest[1]))
        elif kind == "_peft":
            child_peft(Path(rest[0]), Path(rest[1]), Path(rest[2]))
        elif kind == "_compare":
            child_compare(Path(rest[0]), Path(rest[1]))
        else:
            child_loreg(Path(rest[0]), Path(rest[1]), Path(rest[2]), rest[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=12, help="decoder layers (12: ~1.1 GB)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="loreg-bench-moe-", dir=opts.dir))
    try:
        # built in a child: the parent stays small, so children forked from it do not
        # inherit a large ru_maxrss high-water mark
        built = subprocess.run(
            [sys.executable, __file__, "_build", str(root), str(opts.layers)],
            check=True,
            capture_output=True,
            text=True,
        )
        info = json.loads(built.stdout.strip().splitlines()[-1])
        base, adapter = root / "base", root / "adapter"
        print(
            f"{info['total'] / 1e9:.2f} GB float16 Qwen3-MoE checkpoint, {opts.layers} layers x"
            f" {EXPERTS} experts stored per expert ({info['experts'] / info['total']:.0%} of the"
            f" bytes), {info['shards']} shards; rank-{RANK} adapter on {len(TARGETS)} attention"
            f" projections and target_parameters {PARAMETERS} (rank {RANK} x {EXPERTS} experts)",
            flush=True,
        )
        res = {"copy": _measure_rusage(["_copy", str(base), str(root / "copy")], root / "copy")}
        print(_row("copy", res["copy"]), flush=True)
        res["peft"] = _measure_rusage(
            ["_peft", str(base), str(adapter), str(root / "peft")], root / "peft", keep=True
        )
        print(_row("peft", res["peft"]), flush=True)
        res["loreg"] = _measure_rusage(
            ["_loreg", str(base), str(adapter), str(root / "loreg"), opts.device],
            root / "loreg",
            keep=True,
        )
        print(
            _row("loreg", res["loreg"]) + f"  ({res['loreg']['changed']} tensors changed)",
            flush=True,
        )
        lo, cp, pf = res["loreg"], res["copy"], res["peft"]
        print(
            f"  loreg/copy time {lo['op_s'] / cp['op_s']:.2f}x (op),"
            f" {lo['wall_s'] / cp['wall_s']:.2f}x (wall);"
            f" loreg/peft time {lo['op_s'] / pf['op_s']:.2f}x (op),"
            f" {lo['wall_s'] / pf['wall_s']:.2f}x (wall);"
            f" loreg/peft peak RSS {lo['rss_mib'] / pf['rss_mib']:.2f}x",
            flush=True,
        )
        same = _compare(root / "peft", root / "loreg")
        print(
            f"  outputs: {same['tensors']} tensors each, largest |peft - loreg| ="
            f" {same['max_abs_diff']:.3g} (float16)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
