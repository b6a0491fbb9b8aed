"""delta.py on plain tensors equals PEFT's layers, including the kinds tiny models lack (conv)."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn

from loreg.formats.peft_config import lora_scale
from loreg.formats.types import LoraKind, LoraModule
from loreg.merge.delta import delta_weight, dora_merge


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 6, 1)
        self.conv3 = nn.Conv2d(4, 6, 3)
        self.lin = nn.Linear(5, 7)
        self.emb = nn.Embedding(11, 5)


def _module(
    name: str, layer: LoraLayer, kind: LoraKind
) -> tuple[LoraModule, torch.Tensor, torch.Tensor]:
    if kind == "embedding":
        a, b = layer.lora_embedding_A["default"], layer.lora_embedding_B["default"]
    else:
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    r = a.shape[0]
    m = LoraModule(
        name=name,
        kind=kind,
        r=r,
        alpha=layer.lora_alpha["default"],
        scale=layer.scaling["default"],
        fan_in_fan_out=False,
        a_key="a",
        b_key="b",
        a_shape=tuple(a.shape),
        b_shape=tuple(b.shape),
    )
    return m, a.detach(), b.detach()


@pytest.mark.parametrize("use_dora", [False, True])
def test_conv_linear_embedding_match_peft(use_dora: bool) -> None:
    torch.manual_seed(0)
    net = _Net()
    base = {k: v.clone() for k, v in net.state_dict().items()}
    config = LoraConfig(
        r=3,
        lora_alpha=5,
        target_modules=["conv1", "conv3", "lin", "emb"],
        init_lora_weights=False,
        use_dora=use_dora,
        use_rslora=True,
    )
    model = get_peft_model(net, config)
    layers = {n: getattr(model.base_model.model, n) for n in ("conv1", "conv3", "lin", "emb")}
    kinds: dict[str, LoraKind] = {
        "conv1": "conv",
        "conv3": "conv",
        "lin": "linear",
        "emb": "embedding",
    }
    expected = {}
    for name, layer in layers.items():
        m, a, b = _module(name, layer, kinds[name])
        assert m.scale == pytest.approx(lora_scale(3, 5, use_rslora=True))
        w = base[f"{name}.weight"]
        delta = delta_weight(m, a, b, tuple(w.shape))
        if not use_dora:
            torch.testing.assert_close(delta, layer.get_delta_weight("default"))
            expected[name] = w + delta
        else:
            mag = layer.lora_magnitude_vector["default"].weight.detach()
            expected[name] = dora_merge(w, delta, mag, kinds[name], fan_in_fan_out=False)
    merged = model.merge_and_unload()
    for name in layers:
        torch.testing.assert_close(
            getattr(merged, name).weight.detach(), expected[name], rtol=1e-5, atol=1e-6
        )
