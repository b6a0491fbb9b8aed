"""Unmodified PEFT and transformers against loreg, in a fresh interpreter with only the
environment a user sets (``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_DISABLE_XET=1``).

The base is loaded by its repo id, as users do; here the id names a local folder (nothing is
downloaded), and the registry knows a base of that name, so ``base_model_name_or_path`` in
the adapter's config names a registered base.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.factories.hub import hub_env, run_script
from tests.factories.pushes import Models, register_base
from tests.fixtures.api import RegistryServer, unique_name

PEFT_ROUND_TRIP = r"""
import sys, torch
from transformers import AutoModelForCausalLM
from peft import LoraConfig, PeftModel, get_peft_model

base_name, repo = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_name),
                       LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
with torch.no_grad():
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.normal_(0, 0.5)
model.save_pretrained("local-adapter")
info = model.push_to_hub(repo, commit_message="from PEFT")
print("COMMIT", info.oid)

ids = torch.tensor([[1, 5, 9, 2, 7, 3]])
def logits(adapter, **kw):
    base = AutoModelForCausalLM.from_pretrained(base_name).eval()
    with torch.no_grad():
        return PeftModel.from_pretrained(base, adapter, **kw).eval()(ids).logits
plain = AutoModelForCausalLM.from_pretrained(base_name).eval()(ids).logits
local = logits("local-adapter")
for revision in ("main", info.oid, "1"):
    remote = logits(repo, revision=revision)
    assert torch.equal(remote, local), (revision, (remote - local).abs().max())
assert not torch.allclose(local, plain)  # the adapter does change the output
print("SAME LOGITS")
"""

TRAINER = r"""
import sys, torch
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments
from peft import LoraConfig, get_peft_model

base_name, repo = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_name),
                       LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
rows = [{"input_ids": torch.randint(0, 100, (8,)),
         "attention_mask": torch.ones(8, dtype=torch.long)} for _ in range(8)]
for r in rows:
    r["labels"] = r["input_ids"].clone()
args = TrainingArguments(output_dir="trainer-out", max_steps=2, per_device_train_batch_size=2,
                         learning_rate=1e-2, save_strategy="steps", save_steps=1,
                         push_to_hub=True, hub_model_id=repo, report_to=[], use_cpu=True,
                         logging_steps=1, disable_tqdm=True)
trainer = Trainer(model=model, args=args, train_dataset=rows)
trainer.train()
trainer.push_to_hub(commit_message="end of training")
print("PUSHED")
"""


@pytest.fixture
def workdir(tmp_path: Path, models: Models, registry_server: RegistryServer) -> tuple[Path, str]:
    """A folder where the repo id ``acme/<name>`` is the tiny base (and registered as such)."""
    name = f"acme/{unique_name('tiny')}"
    shutil.copytree(models.base.path, tmp_path / name)
    assert register_base(registry_server.admin, models.base, name).status_code == 201
    return tmp_path, name


@pytest.mark.slow
def test_peft_push_to_hub_and_from_pretrained(
    registry_server: RegistryServer, workdir: tuple[Path, str]
) -> None:
    cwd, base = workdir
    alice = registry_server.make_user()
    repo = f"{alice.name}/{unique_name('peft')}"
    out = run_script(
        PEFT_ROUND_TRIP, hub_env(registry_server, alice.token, cwd / "hf"), cwd, base, repo
    )
    assert "SAME LOGITS" in out.stdout
    [version] = registry_server.admin.get(f"/adapters/{repo}/versions").json()["versions"]
    assert version["base"] == base and version["description"] == "from PEFT"
    assert f"COMMIT {version['digest'][7:47]}" in out.stdout
    config = json.loads((cwd / "local-adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == base


@pytest.mark.slow
def test_trainer_push_to_hub_lands_as_versions(
    registry_server: RegistryServer, workdir: tuple[Path, str]
) -> None:
    cwd, base = workdir
    alice = registry_server.make_user()
    repo = f"{alice.name}/{unique_name('trained')}"
    out = run_script(TRAINER, hub_env(registry_server, alice.token, cwd / "hf"), cwd, base, repo)
    assert "PUSHED" in out.stdout
    versions = registry_server.admin.get(f"/adapters/{repo}/versions").json()["versions"]
    assert versions, out.stderr
    newest = versions[0]
    paths = {f["path"] for f in newest["files"]}
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "README.md",
        "training_args.bin",
    } <= paths
    assert newest["base"] == base
    assert all(v["base"] == base for v in versions)
