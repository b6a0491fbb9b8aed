"""Streaming merges equal PEFT's merge_and_unload(), load with transformers, and fail cleanly.

Tolerances: float32 merges are compared with atol=rtol=1e-5 (in practice they are
bit-identical: same float32 operations). For float16/bfloat16 bases loreg adds the delta in
float32 and rounds once, PEFT rounds the delta to the base dtype and then adds in that
dtype, so the two may differ by one unit in the last place: rtol=2**-10 (float16) and
2**-7 (bfloat16).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from peft.utils import merge_utils
from safetensors.torch import load_file

from loreg.errors import Conflict, Incompatible
from loreg.formats.base import fingerprint
from loreg.merge.methods import tensor_seed
from loreg.merge.options import Method, MethodOptions
from loreg.merge.stream import FingerprintMismatch, merge_checkpoint
from tests.factories.adapter_kinds import KINDS, build_kind
from tests.factories.merge_inputs import (
    load_peft,
    peft_deltas,
    peft_merged_checkpoint,
    peft_merged_state,
    perturb_saved_modules,
)
from tests.factories.tiny_models import (
    MOE_TARGET_PARAMETERS,
    TinyModel,
    load_model,
    make_bert_seq_cls,
    make_gpt2,
    make_llama,
    make_lora_adapter,
    make_moe,
    make_t5,
)

TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2**-10, 1e-4), torch.bfloat16: (2**-7, 1e-3)}


def _merged(out: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(out.glob("*.safetensors")):
        tensors.update(load_file(f))
    return tensors


def _assert_matches(
    out: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], dtype: torch.dtype
) -> None:
    rtol, atol = TOL[dtype]
    for name, t in out.items():
        assert t.dtype == ref[name].dtype, name
        torch.testing.assert_close(t, ref[name], rtol=rtol, atol=atol, msg=name)


MAKERS = {"llama": make_llama, "gpt2": make_gpt2, "bert": make_bert_seq_cls, "t5": make_t5}

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama-plain": ("llama", {}),
    "llama-rslora-patterns": (
        "llama",
        {
            "use_rslora": True,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj"],
            "rank_pattern": {"q_proj": 2, "layers.1.mlp.down_proj": 8},
            "alpha_pattern": {"v_proj": 3.0},
        },
    ),
    "llama-dora": ("llama", {"use_dora": True}),
    "llama-embedding": ("llama", {"target_modules": ["embed_tokens", "q_proj", "lm_head"]}),
    "llama-embedding-dora": (
        "llama",
        {"target_modules": ["embed_tokens", "v_proj"], "use_dora": True},
    ),
    "gpt2-conv1d": ("gpt2", {}),
    "gpt2-conv1d-dora-rslora": ("gpt2", {"use_dora": True, "use_rslora": True}),
    "bert-seqcls-lora-bias": ("bert", {"lora_bias": True}),
    "t5-modules-to-save": ("t5", {"modules_to_save": ["final_layer_norm"]}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_single_adapter_equals_merge_and_unload(tmp_path: Path, case: str) -> None:
    kind, kwargs = CASES[case]
    base = MAKERS[kind](tmp_path / "base")
    adapter = make_lora_adapter(base, tmp_path / "adapter", **kwargs)
    if kind in ("bert", "t5"):
        # classifier (added by PEFT for SEQ_CLS) / lm_head: changed as training would
        assert perturb_saved_modules(adapter.path)
    result = merge_checkpoint(base.path, [(adapter.path, 1.0)], tmp_path / "out", device="cpu")
    out = _merged(tmp_path / "out")
    ref = peft_merged_state(base, adapter.path)
    assert set(out) <= set(ref)
    _assert_matches(out, ref, torch.float32)
    assert result.changed_tensors > 0
    assert result.fingerprint == fingerprint(base.path).fingerprint


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert", "t5"])
def test_merged_folder_loads_and_gives_peft_logits(tmp_path: Path, kind: str) -> None:
    base = MAKERS[kind](tmp_path / "base", max_shard_size="20KB")  # sharded input
    adapter = make_lora_adapter(base, tmp_path / "adapter", use_rslora=kind == "llama")
    merge_checkpoint(
        base.path, [(adapter.path, 1.0)], tmp_path / "out", device="cpu", max_shard_bytes=30_000
    )
    assert (tmp_path / "out" / "model.safetensors.index.json").is_file()
    assert (tmp_path / "out" / "config.json").is_file()
    merged = load_model(tmp_path / "out")
    peft_model = load_peft(base, [adapter.path])
    ids = torch.tensor([[1, 5, 9, 33, 7, 2]])
    kwargs: dict[str, Any] = {"input_ids": ids}
    if kind == "t5":
        kwargs["decoder_input_ids"] = torch.tensor([[0, 3, 4]])
    with torch.no_grad():
        got = merged(**kwargs).logits
        want = peft_model(**kwargs).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_grown_vocabulary_updates_config(tmp_path: Path) -> None:
    base = make_llama(tmp_path / "base")
    adapter = make_lora_adapter(
        base, tmp_path / "adapter", grow_vocab_to=136, modules_to_save=["embed_tokens", "lm_head"]
    )
    perturb_saved_modules(adapter.path)
    merge_checkpoint(base.path, [(adapter.path, 1.0)], tmp_path / "out", device="cpu")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["vocab_size"] == 136
    out = _merged(tmp_path / "out")
    assert out["model.embed_tokens.weight"].shape == (136, 32)
    _assert_matches(out, peft_merged_state(base, adapter.path, vocab=136), torch.float32)
    merged = load_model(tmp_path / "out")
    ids = torch.tensor([[1, 130, 135, 4]])
    with torch.no_grad():
        want = load_peft(base, [adapter.path], vocab=136)(input_ids=ids).logits
        torch.testing.assert_close(merged(input_ids=ids).logits, want, rtol=1e-5, atol=1e-5)


# what each kind must change (so a merge that skipped that part would fail)
_CHANGES = {"moe": ".experts.", "tokens": "embed_tokens", "adalora": "q_proj", "bias": ".bias"}


@pytest.mark.parametrize("kind", KINDS)
def test_adapter_kinds_equal_merge_and_unload(tmp_path: Path, kind: str) -> None:
    """MoE expert parameters, trainable tokens, AdaLoRA, trained biases: every tensor equals
    PEFT's merge_and_unload() saved by transformers, and the merged folder gives its logits."""
    case = build_kind(kind, tmp_path / "in")
    result = merge_checkpoint(
        case.base.path,
        [(case.adapter, 1.0)],
        tmp_path / "out",
        device="cpu",
        max_shard_bytes=30_000,
    )
    out = _merged(tmp_path / "out")
    peft_model, ref = peft_merged_checkpoint(
        case.base, case.adapter, tmp_path / "peft", vocab=case.vocab
    )
    assert set(out) == set(ref)
    _assert_matches(out, ref, torch.float32)
    base = _merged(case.base.path)
    changed = {n for n, t in out.items() if t.shape != base[n].shape or not torch.equal(t, base[n])}
    assert any(_CHANGES[kind.split("-")[0]] in n for n in changed), sorted(changed)
    assert result.changed_tensors >= len(changed)
    merged = load_model(tmp_path / "out")
    ids = torch.tensor([list(case.input_ids)])
    with torch.no_grad():
        torch.testing.assert_close(
            merged(input_ids=ids).logits, peft_model(input_ids=ids).logits, rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_base(tmp_path: Path, dtype: torch.dtype) -> None:
    base = make_llama(tmp_path / "base", dtype=dtype)
    adapter = make_lora_adapter(base, tmp_path / "adapter", dtype=dtype)
    merge_checkpoint(base.path, [(adapter.path, 1.0)], tmp_path / "out", device="cpu")
    out = _merged(tmp_path / "out")
    assert all(t.dtype == dtype for t in out.values())
    # PEFT's oracle in float32 (no double rounding), then rounded once: loreg is exact to it.
    from peft import PeftModel

    model = load_model(base.path, dtype=torch.float32)
    ref = PeftModel.from_pretrained(model, str(adapter.path)).merge_and_unload().state_dict()
    for name, t in out.items():
        assert torch.equal(t, ref[name].to(dtype)), name
    # and within one ulp of PEFT merging natively in the half dtype
    _assert_matches(out, peft_merged_state(base, adapter.path), dtype)


def test_dtype_cast_and_untouched_bytes(tmp_path: Path) -> None:
    base = make_llama(tmp_path / "base")
    adapter = make_lora_adapter(base, tmp_path / "adapter")
    merge_checkpoint(base.path, [(adapter.path, 1.0)], tmp_path / "same", device="cpu")
    before = load_file(base.path / "model.safetensors")
    same = _merged(tmp_path / "same")
    assert torch.equal(same["model.norm.weight"], before["model.norm.weight"])
    merge_checkpoint(
        base.path, [(adapter.path, 1.0)], tmp_path / "bf16", device="cpu", dtype="bfloat16"
    )
    cast = _merged(tmp_path / "bf16")
    assert all(t.dtype == torch.bfloat16 for t in cast.values())
    for name, t in cast.items():
        assert torch.equal(t, same[name].to(torch.bfloat16)), name
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"


def _two(tmp_path: Path, **kwargs: Any) -> tuple[TinyModel, list[Path]]:
    base = make_llama(tmp_path / "base")
    a0 = make_lora_adapter(base, tmp_path / "a0", r=4, seed=1, **kwargs)
    a1 = make_lora_adapter(
        base, tmp_path / "a1", r=2, seed=2, target_modules=["q_proj", "v_proj", "up_proj"]
    )
    return base, [a0.path, a1.path]


WEIGHTS = [0.7, -0.4]


@pytest.mark.parametrize(
    "method", ["linear", "cat", "ties", "dare_linear", "dare_ties", "magnitude_prune", "svd"]
)
def test_two_adapters_equal_merge_utils_on_peft_deltas(tmp_path: Path, method: Method) -> None:
    base, adapters = _two(tmp_path)
    density = 0.5 if method not in ("linear", "cat", "svd") else None
    merge_checkpoint(
        base.path,
        list(zip(adapters, WEIGHTS, strict=True)),
        tmp_path / "out",
        options=MethodOptions(method=method, density=density, seed=3),
        device="cpu",
    )
    out = _merged(tmp_path / "out")
    before = load_file(base.path / "model.safetensors")
    deltas = peft_deltas(load_peft(base, adapters), ["a0", "a1"])
    assert deltas
    for name, by_adapter in deltas.items():
        names = [n for n in ("a0", "a1") if n in by_adapter]
        ds = [by_adapter[n] for n in names]
        ws = torch.tensor([WEIGHTS[int(n[1])] for n in names])
        if method in ("linear", "cat"):
            combined = merge_utils.task_arithmetic(ds, ws)
        elif method == "svd":
            summed = merge_utils.task_arithmetic(ds, ws)
            u, s, vh = torch.linalg.svd(summed, full_matrices=False)
            k = 4  # max rank of the adapters touching the module
            combined = u[:, :k] @ torch.diag(s[:k]) @ vh[:k]
        else:
            torch.manual_seed(tensor_seed(3, name))
            combined = getattr(merge_utils, method)(ds, ws, 0.5)
        torch.testing.assert_close(out[name], before[name] + combined, rtol=1e-5, atol=1e-5)
    untouched = set(out) - set(deltas)
    assert all(torch.equal(out[n], before[n]) for n in untouched)


def test_wrong_fingerprint_fails_and_leaves_nothing(tmp_path: Path) -> None:
    base = make_llama(tmp_path / "base")
    other = make_llama(tmp_path / "other", seed=5)  # same shapes, different bytes
    adapter = make_lora_adapter(base, tmp_path / "adapter")
    expected = fingerprint(other.path).fingerprint
    assert expected is not None
    out = tmp_path / "scratch" / "out"
    out.mkdir(parents=True)  # a worker's empty scratch folder stays as it was
    with pytest.raises(FingerprintMismatch):
        merge_checkpoint(
            base.path, [(adapter.path, 1.0)], out, device="cpu", expected_fingerprint=expected
        )
    assert list((tmp_path / "scratch").iterdir()) == [out]
    assert list(out.iterdir()) == []
    good = fingerprint(base.path).fingerprint
    assert good is not None
    result = merge_checkpoint(
        base.path, [(adapter.path, 1.0)], out, device="cpu", expected_fingerprint=good
    )
    assert result.fingerprint == good
    assert sorted(p.name for p in out.iterdir()) == sorted(f.path for f in result.files)


def test_incompatible_adapter_fails_before_writing(tmp_path: Path) -> None:
    base = make_llama(tmp_path / "base")
    bigger = make_llama(tmp_path / "bigger", hidden_size=64, intermediate_size=96)
    adapter = make_lora_adapter(bigger, tmp_path / "adapter")
    with pytest.raises(Incompatible) as info:
        merge_checkpoint(base.path, [(adapter.path, 1.0)], tmp_path / "out", device="cpu")
    # the same report validate gives, before a byte is written
    problems = info.value.details["problems"]
    assert any(p["code"] == "shape_mismatch" for p in problems), problems
    assert "nothing was written" in info.value.message
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "out.incomplete").exists()


def test_progress_cancel_and_existing_output(tmp_path: Path) -> None:
    base = make_llama(tmp_path / "base", max_shard_size="20KB")
    adapter = make_lora_adapter(base, tmp_path / "adapter")
    seen: list[tuple[int, int]] = []

    class Stop(Exception):
        pass

    def cancel() -> None:
        if len(seen) >= 3:
            raise Stop

    with pytest.raises(Stop):
        merge_checkpoint(
            base.path,
            [(adapter.path, 1.0)],
            tmp_path / "out",
            device="cpu",
            progress=lambda done, total, _msg: seen.append((done, total)),
            should_cancel=cancel,
        )
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.incomplete").exists()
    seen.clear()
    result = merge_checkpoint(
        base.path,
        [(adapter.path, 1.0)],
        tmp_path / "out",
        device="cpu",
        progress=lambda done, total, _msg: seen.append((done, total)),
    )
    assert seen[-1][0] == seen[-1][1] == result.bytes_read
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))
    with pytest.raises(Conflict):
        merge_checkpoint(base.path, [(adapter.path, 1.0)], tmp_path / "out", device="cpu")


def test_two_adapters_saving_the_same_module_are_refused(tmp_path: Path) -> None:
    base = make_bert_seq_cls(tmp_path / "base")
    a0 = make_lora_adapter(base, tmp_path / "a0")
    a1 = make_lora_adapter(base, tmp_path / "a1", seed=1)
    with pytest.raises(Incompatible):
        merge_checkpoint(
            base.path, [(a0.path, 1.0), (a1.path, 1.0)], tmp_path / "out", device="cpu"
        )
    assert not (tmp_path / "out").exists()


def test_two_expert_adapters_weighted(tmp_path: Path) -> None:
    """Parameter LoRA merges linearly: base + sum w_i * (PEFT's merge of adapter i - base)."""
    base = make_moe(tmp_path / "base", "mixtral")
    paths = [
        make_lora_adapter(
            base,
            tmp_path / f"a{i}",
            target_modules=["q_proj"],
            seed=i,
            r=2 + i,
            target_parameters=MOE_TARGET_PARAMETERS["mixtral"],
        ).path
        for i in range(2)
    ]
    weights = [0.7, -0.4]
    merge_checkpoint(
        base.path, list(zip(paths, weights, strict=True)), tmp_path / "out", device="cpu"
    )
    out = _merged(tmp_path / "out")
    original = _merged(base.path)
    singles = [
        peft_merged_checkpoint(base, p, tmp_path / f"peft{i}")[1] for i, p in enumerate(paths)
    ]
    for name, t in out.items():
        want = original[name] + sum(
            w * (s[name] - original[name]) for w, s in zip(weights, singles, strict=True)
        )
        torch.testing.assert_close(t, want, rtol=1e-5, atol=1e-6, msg=name)
    assert any(".experts." in n and not torch.equal(out[n], original[n]) for n in out)
    with pytest.raises(Incompatible, match="method linear or cat only"):
        merge_checkpoint(
            base.path,
            list(zip(paths, weights, strict=True)),
            tmp_path / "ties",
            options=MethodOptions(method="ties", density=0.5),
            device="cpu",
        )
    assert not (tmp_path / "ties").exists()


def test_trainable_tokens_refusals(tmp_path: Path) -> None:
    base = make_llama(tmp_path / "base")
    a = make_lora_adapter(
        base, tmp_path / "a", target_modules=["q_proj"], trainable_token_indices=[3, 5]
    ).path
    b = make_lora_adapter(
        base, tmp_path / "b", target_modules=["v_proj"], seed=1, trainable_token_indices=[5, 9]
    ).path
    c = make_lora_adapter(
        base, tmp_path / "c", target_modules=["v_proj"], seed=2, trainable_token_indices=[10, 11]
    ).path
    with pytest.raises(Incompatible, match="weight 1 only"):
        merge_checkpoint(base.path, [(a, 0.5)], tmp_path / "half", device="cpu")
    with pytest.raises(Incompatible, match="same rows"):
        merge_checkpoint(base.path, [(a, 1.0), (b, 1.0)], tmp_path / "overlap", device="cpu")
    assert not (tmp_path / "half").exists() and not (tmp_path / "overlap").exists()
    # disjoint rows of two adapters: both written, as PEFT merges both
    merge_checkpoint(base.path, [(a, 1.0), (c, 1.0)], tmp_path / "both", device="cpu")
    rows = _merged(tmp_path / "both")["model.embed_tokens.weight"]
    for path, ids in ((a, [3, 5]), (c, [10, 11])):
        delta = load_file(path / "adapter_model.safetensors")[
            "base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"
        ]
        assert torch.equal(rows[ids], delta)
