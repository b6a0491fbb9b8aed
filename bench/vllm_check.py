"""Device check: vLLM serves a tiny base and two adapters resolved through loreg, and its
log-probabilities with and without each adapter agree with PEFT's.

    .venv/bin/python bench/vllm_check.py

Needs a CUDA GPU, vLLM and the test extras (transformers, peft). Where any is missing it
prints a note and exits 0. Otherwise it builds a tiny Llama base and two LoRA adapters from
configs (nothing is downloaded), starts ``loreg serve`` (SQLite + a local folder), registers
the base and pushes the adapters, resolves them with the plugin's resolver
(``loreg.serving.vllm.AdapterResolver``, the code vLLM runs), then compares vLLM's prompt
log-probabilities against PEFT's for the base alone and for each adapter. It also checks
that an adapter is refused for another base. Exits 1 on any disagreement.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TOLERANCE = 5e-2  # float16 kernels against PEFT in float32


def _missing() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    for module in ("vllm", "transformers", "peft"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    return None


def main() -> int:
    reason = _missing()
    if reason is not None:
        print(f"vllm_check: skipped ({reason}); nothing was compared")
        return 0
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transfer import BIN, free_port, wait_http
    from transformers import AutoModelForCausalLM, LlamaConfig
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    from loreg.client import Client
    from loreg.serving.vllm import AdapterResolver, BaseMismatch

    tmp = Path(tempfile.mkdtemp(prefix="loreg-vllm-"))
    serve = None
    try:
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=256,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=128,
        )
        base_dir = tmp / "acme" / "tiny"
        AutoModelForCausalLM.from_config(config).save_pretrained(base_dir)
        adapters = []
        for seed, targets in ((1, ["q_proj", "v_proj"]), (2, ["q_proj", "k_proj", "o_proj"])):
            torch.manual_seed(seed)
            model = get_peft_model(
                AutoModelForCausalLM.from_pretrained(base_dir),
                LoraConfig(r=8, lora_alpha=16, target_modules=targets),
            )
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if "lora_B" in name:
                        p.normal_(0, 0.2)
            out = tmp / f"adapter-{seed}"
            model.save_pretrained(str(out))
            cfg = json.loads((out / "adapter_config.json").read_text())
            cfg["base_model_name_or_path"] = "acme/tiny"
            (out / "adapter_config.json").write_text(json.dumps(cfg))
            adapters.append(out)

        home, port = tmp / "home", free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
        env["LOREG_HOME"] = str(home)
        serve = subprocess.Popen(
            [str(BIN / "loreg"), "serve", "--port", str(port), "--no-worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz")
        while not (home / "credentials.json").exists():
            time.sleep(0.1)
        token = json.loads((home / "credentials.json").read_text())["token"]
        client = Client(url, token, home=tmp / "client")
        client.register_base(base_dir, "acme/tiny", upload=False)
        for i, folder in enumerate(adapters):
            client.push(folder, f"admin/ad{i}", base="acme/tiny")

        resolver = AdapterResolver(client, tmp / "cache")
        ids = [1, 17, 42, 99, 3, 250, 8, 64]
        llm = LLM(
            model=str(base_dir),
            enable_lora=True,
            max_lora_rank=8,
            dtype="float16",
            enforce_eager=True,
            gpu_memory_utilization=0.3,
            max_model_len=64,
        )
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0)

        def vllm_logprobs(lora: LoRARequest | None) -> torch.Tensor:
            out = llm.generate({"prompt_token_ids": ids}, params, lora_request=lora)[0]
            picked = [next(iter(d.values())).logprob for d in out.prompt_logprobs[1:]]
            return torch.tensor(picked)

        def peft_logprobs(adapter: Path | None) -> torch.Tensor:
            model = AutoModelForCausalLM.from_pretrained(base_dir).eval()
            if adapter is not None:
                model = PeftModel.from_pretrained(model, adapter).eval()
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
            return logp[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0]

        worst = (vllm_logprobs(None) - peft_logprobs(None)).abs().max().item()
        print(f"base alone: max |vLLM - PEFT| log-prob = {worst:.4f}")
        failed = worst > TOLERANCE
        for i, folder in enumerate(adapters):
            found = resolver.resolve("acme/tiny", f"admin/ad{i}")
            assert found is not None
            lora = LoRARequest(
                lora_name=found.name, lora_int_id=found.int_id, lora_path=str(found.path)
            )
            diff = (vllm_logprobs(lora) - peft_logprobs(folder)).abs().max().item()
            moved = (peft_logprobs(folder) - peft_logprobs(None)).abs().max().item()
            print(
                f"admin/ad{i}: max |vLLM - PEFT| = {diff:.4f} (the adapter moves log-probs "
                f"by up to {moved:.4f})"
            )
            failed |= diff > TOLERANCE or moved < 10 * TOLERANCE
        try:
            resolver.resolve("acme/other-weights", "admin/ad0")
            print("unregistered base: not refused")
            failed = True
        except (BaseMismatch, ValueError) as exc:
            print(f"refused as expected: {exc}")
        print("FAILED" if failed else "OK")
        return 1 if failed else 0
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
