"""Finding base tensors by the adapter's names: renames, tied aliases, prefix rewrites."""

from __future__ import annotations

from loreg.formats.base_lookup import BaseLookup, find_rewrite, layer_hint
from loreg.formats.types import BaseManifest


def _manifest(prefix: str = "model.", layers: int = 2) -> BaseManifest:
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {
        f"{prefix}embed_tokens.weight": ("F32", (128, 32))
    }
    for i in range(layers):
        for proj in ("q_proj", "v_proj"):
            tensors[f"{prefix}layers.{i}.self_attn.{proj}.weight"] = ("F32", (32, 32))
    return BaseManifest(
        tensors=tensors,
        structure_hash="sha256:" + "0" * 64,
        aliases={"lm_head.weight": f"{prefix}embed_tokens.weight"},
    )


def test_raw_finds_stored_tensors_tied_aliases_and_renames() -> None:
    renames = {"model.q.weight": "model.layers.0.self_attn.q_proj.weight"}
    lookup = BaseLookup(_manifest(), renames=renames)
    assert lookup.raw("model.layers.1.self_attn.v_proj.weight") == (32, 32)
    assert lookup.raw("lm_head.weight") == (128, 32)  # tied to the embedding
    assert lookup.raw("model.q.weight") == (32, 32)
    assert lookup.name("model.q.weight") == "model.layers.0.self_attn.q_proj.weight"
    assert lookup.raw("model.layers.5.self_attn.q_proj.weight") is None


def test_a_rewrite_renames_the_prefix() -> None:
    lookup = BaseLookup(_manifest(prefix="transformer."))
    assert lookup.shape("model.layers.0.self_attn.q_proj.weight") is None
    lookup.rewrite = ("model.", "transformer.")
    assert lookup.name("model.layers.0.self_attn.q_proj.weight") == (
        "transformer.layers.0.self_attn.q_proj.weight"
    )
    assert lookup.shape("model.layers.0.self_attn.q_proj.weight") == (32, 32)


def test_find_rewrite_picks_the_prefix_that_explains_most_names() -> None:
    names = [f"layers.{i}.self_attn.{p}.weight" for i in range(2) for p in ("q_proj", "v_proj")]
    assert find_rewrite(names, BaseLookup(_manifest())) == (("", "model."), 4)
    wrapped = ["model.model." + n for n in names]
    assert find_rewrite(wrapped, BaseLookup(_manifest())) == (("model.", ""), 4)
    assert find_rewrite(["nothing.like.this.weight"], BaseLookup(_manifest())) is None
    assert find_rewrite([], BaseLookup(_manifest())) is None


def test_layer_hint_only_for_a_layer_the_base_lacks() -> None:
    lookup = BaseLookup(_manifest(layers=1))
    hint = layer_hint("model.layers.3.self_attn.q_proj.weight", lookup)
    assert "1 layer(s) under 'model.layers.', indices 0..0" in hint
    assert layer_hint("model.layers.0.self_attn.q_proj.weight", lookup) == ""
    assert layer_hint("lm_head.weight", lookup) == ""
