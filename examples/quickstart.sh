#!/usr/bin/env bash
# loreg in five minutes, from nothing but the installed package:
#   builds a tiny base model and a LoRA adapter, starts `loreg serve` on the embedded default
#   (SQLite + a blob folder, in a throwaway LOREG_HOME inside WORKDIR), registers the base,
#   pushes the adapter, lists, pulls, merges on the registry's worker, merges again on this
#   machine (`loreg merge --local`), checks both merges agree, and prints where everything is.
#
#   bash examples/quickstart.sh [WORKDIR]        # WORKDIR defaults to a new temp folder
#
# WORKDIR ends up holding base/ and adapter/ (the inputs, reusable by hand), merged/ (the
# registry's merge), merged-local/ (the local merge), pulled/ and home/ (the registry's data).
# Uses transformers + peft to build the models when they are installed, else torch alone
# (writing the same files). Exits non-zero on any failure; the server is always stopped.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOREG=${LOREG:-$(command -v loreg || true)}
if [ -z "$LOREG" ] && [ -x "$HERE/../.venv/bin/loreg" ]; then
  LOREG="$HERE/../.venv/bin/loreg"   # the clone's virtual environment, not activated
fi
if [ -z "$LOREG" ]; then
  echo "quickstart: no 'loreg' command: install it (README, 'Set up'), then" \
       "'source .venv/bin/activate', or set LOREG=/path/to/loreg" >&2
  exit 1
fi
# The interpreter that runs loreg has torch (and maybe transformers + peft).
PYTHON=${PYTHON:-$(head -1 "$LOREG" | sed -n 's/^#!//p')}
[ -x "${PYTHON%% *}" ] || PYTHON=python3

WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/loreg-quickstart.XXXXXX")}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
# What an earlier run in the same WORKDIR left: the registry's data and the outputs.
rm -rf "$WORK/home" "$WORK/pulled" "$WORK/merged" "$WORK/merged-local" "$WORK/serve.log"
export LOREG_HOME="$WORK/home"
unset LOREG_DATABASE_URL LOREG_STORAGE_URL LOREG_TOKEN LOREG_OFFLINE || true

SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }

step "building a tiny base model and a LoRA adapter in $WORK"
"$PYTHON" - "$WORK" <<'PY'
import json, sys, warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # numpy is optional
import torch

work = Path(sys.argv[1])
base_dir, adapter_dir = work / "base", work / "adapter"
H, LAYERS, V, I, HEADS, KV, R = 32, 2, 128, 64, 4, 2, 4
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
torch.manual_seed(0)
try:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
except ImportError:
    LlamaForCausalLM = None

if LlamaForCausalLM is not None:
    config = LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=I,
                         num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                         num_key_value_heads=KV, max_position_embeddings=64,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(base_dir)
    lora = LoraConfig(r=R, lora_alpha=8, target_modules=TARGETS, task_type="CAUSAL_LM",
                      init_lora_weights=False, base_model_name_or_path="quickstart/tiny-llama")
    get_peft_model(model, lora).save_pretrained(adapter_dir)
    print("built with transformers + peft")
else:
    from loreg.merge.sources import save_tensors

    head = H // HEADS
    shapes = {"q_proj": (H, H), "k_proj": (KV * head, H), "v_proj": (KV * head, H),
              "o_proj": (H, H)}
    tensors = {"model.embed_tokens.weight": torch.randn(V, H) * 0.02,
               "model.norm.weight": torch.ones(H), "lm_head.weight": torch.randn(V, H) * 0.02}
    lora = {}
    for i in range(LAYERS):
        p = f"model.layers.{i}"
        for name, (out_f, in_f) in shapes.items():
            tensors[f"{p}.self_attn.{name}.weight"] = torch.randn(out_f, in_f) * 0.02
            key = f"base_model.model.{p}.self_attn.{name}"
            lora[f"{key}.lora_A.weight"] = torch.randn(R, in_f) * 0.1
            lora[f"{key}.lora_B.weight"] = torch.randn(out_f, R) * 0.1
        for name, (out_f, in_f) in {"gate_proj": (I, H), "up_proj": (I, H),
                                    "down_proj": (H, I)}.items():
            tensors[f"{p}.mlp.{name}.weight"] = torch.randn(out_f, in_f) * 0.02
        tensors[f"{p}.input_layernorm.weight"] = torch.ones(H)
        tensors[f"{p}.post_attention_layernorm.weight"] = torch.ones(H)
    base_dir.mkdir(parents=True, exist_ok=True)
    adapter_dir.mkdir(parents=True, exist_ok=True)
    save_tensors(tensors, base_dir / "model.safetensors", metadata={"format": "pt"})
    (base_dir / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V,
        "hidden_size": H, "intermediate_size": I, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
        "torch_dtype": "float32"}, indent=2))
    save_tensors(lora, adapter_dir / "adapter_model.safetensors", metadata={"format": "pt"})
    (adapter_dir / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": R, "lora_alpha": 8,
        "target_modules": TARGETS, "lora_dropout": 0.0, "bias": "none",
        "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
        "modules_to_save": None, "rank_pattern": {}, "alpha_pattern": {},
        "base_model_name_or_path": "quickstart/tiny-llama", "inference_mode": True}, indent=2))
    print("built with torch alone (transformers/peft not installed)")
PY

PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export LOREG_URL="http://127.0.0.1:$PORT"

step "starting loreg serve on $LOREG_URL (LOREG_HOME=$LOREG_HOME)"
"$LOREG" serve --port "$PORT" >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
  if grep -q "serving at" "$WORK/serve.log" 2>/dev/null && [ -f "$LOREG_HOME/credentials.json" ]; then
    break
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "quickstart: loreg serve exited:" >&2; cat "$WORK/serve.log" >&2; exit 1
  fi
  sleep 0.1
done
"$LOREG" whoami

step "registering the base model"
"$LOREG" base register "$WORK/base" --name quickstart/tiny-llama

step "pushing the adapter as admin/tiny-lora:v1"
"$LOREG" push "$WORK/adapter" admin/tiny-lora:v1 --base quickstart/tiny-llama \
  --label dataset=quickstart --label lr=2e-4

step "listing adapters"
"$LOREG" ls
"$LOREG" show admin/tiny-lora:v1

step "pulling it back"
"$LOREG" pull admin/tiny-lora:v1 -o "$WORK/pulled" --force
cmp "$WORK/adapter/adapter_model.safetensors" "$WORK/pulled/adapter_model.safetensors"

step "merging it into the base on the registry's worker"
"$LOREG" merge admin/tiny-lora:v1 --base quickstart/tiny-llama -o "$WORK/merged"

step "merging it again on this machine, no server involved (loreg merge --local)"
"$LOREG" merge "$WORK/adapter" --base "$WORK/base" -o "$WORK/merged-local" --local

step "checking that both merges wrote the same tensors"
"$PYTHON" - "$WORK/merged" "$WORK/merged-local" <<'PY'
import sys, warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # numpy is optional
import torch
from safetensors import safe_open


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not iterable
                out[key] = f.get_tensor(key)
    return out


server, local = (tensors(Path(p)) for p in sys.argv[1:3])
assert server.keys() == local.keys(), "the two merges hold different tensors"
differ = [k for k in server if not torch.equal(server[k], local[k])]
assert not differ, f"the two merges differ in {differ}"
print(f"{len(server)} tensors, identical")
PY

step "done"
echo "base model folder:        $WORK/base"
echo "adapter folder:           $WORK/adapter"
echo "merged by the registry:   $WORK/merged"
echo "merged on this machine:   $WORK/merged-local"
