"""The new adapter kinds through the real binaries, against a running registry on both back
ends: ``loreg base register``, ``loreg push`` (the compatibility check at push), ``loreg show``
(which parameters, which token ids), and a server ``loreg merge`` whose output equals PEFT's
``merge_and_unload()`` and gives its logits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.cli.harness import LoregEnv
from tests.factories.adapter_kinds import build_kind
from tests.factories.merge_inputs import peft_merged_checkpoint
from tests.factories.tiny_models import load_model

KINDS = ["moe-qwen3_moe", "tokens-tied", "adalora-allocated"]


@pytest.mark.slow
def test_push_show_and_server_merge(registry: LoregEnv, tmp_path: Path) -> None:
    r = registry
    for kind in KINDS:
        case = build_kind(kind, tmp_path / kind)
        r.json("base", "register", str(case.base.path), "--name", f"test/{kind}")
        pushed = r.json("push", str(case.adapter), f"admin/{kind}", "--base", f"test/{kind}")
        assert pushed["version"]["number"] == 1
        shown = r.run("show", f"admin/{kind}").stdout
        if kind.startswith("moe"):
            assert "target params:" in shown and "mlp.experts.gate_up_proj" in shown
        if kind.startswith("tokens"):
            [line] = [x for x in shown.splitlines() if x.startswith("token ids:")]
            assert re.search(r"\b3\b.*\b5\b.*\b7\b", line), line
        out = tmp_path / f"{kind}-merged"
        merged = r.json("merge", f"admin/{kind}", "--base", f"test/{kind}", "-o", str(out))
        assert merged["job"]["status"] == "succeeded"
        got: dict[str, torch.Tensor] = {}
        for f in sorted(out.glob("*.safetensors")):
            got.update(load_file(str(f)))
        peft_model, want = peft_merged_checkpoint(
            case.base, case.adapter, tmp_path / f"{kind}-peft", vocab=case.vocab
        )
        assert set(got) == set(want), kind
        for name, tensor in got.items():
            torch.testing.assert_close(tensor, want[name], rtol=1e-5, atol=1e-6, msg=name)
        ids = torch.tensor([list(case.input_ids)])
        with torch.no_grad():
            torch.testing.assert_close(
                load_model(out)(input_ids=ids).logits,
                peft_model(input_ids=ids).logits,
                rtol=1e-5,
                atol=1e-5,
            )
