"""Compatibility reports: real PEFT adapters on real (tiny) bases, right and wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from loreg.cli.main import cli
from loreg.formats.base import fingerprint, read_manifest
from loreg.formats.compat import check_compatibility
from loreg.formats.peft import read_adapter
from tests.factories import (
    TinyModel,
    make_bert_seq_cls,
    make_gpt2,
    make_llama,
    make_lora_adapter,
    make_t5,
)
from tests.factories.tampered import with_config


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compat")


@pytest.fixture(scope="module")
def bases(root: Path) -> dict[str, TinyModel]:
    return {
        "llama": make_llama(root / "llama"),
        "llama-other-weights": make_llama(root / "llama-seed1", seed=1),
        "llama-h64": make_llama(root / "llama-h64", hidden_size=64),
        "llama-1layer": make_llama(root / "llama-1layer", num_layers=1),
        "llama-4layers": make_llama(root / "llama-4layers", num_layers=4),
        "gpt2": make_gpt2(root / "gpt2"),
        "bert": make_bert_seq_cls(root / "bert"),
        "bert-5labels": make_bert_seq_cls(root / "bert5", num_labels=5),
        "t5": make_t5(root / "t5"),
    }


OK_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("llama", {}),
    "llama-rslora-dora": ("llama", {"use_rslora": True, "use_dora": True}),
    "llama-patterns": ("llama", {"rank_pattern": {"q_proj": 2}, "alpha_pattern": {"v_proj": 3}}),
    "llama-embedding": ("llama", {"target_modules": ["embed_tokens", "q_proj", "lm_head"]}),
    "llama-grown": (
        "llama",
        {"modules_to_save": ["embed_tokens", "lm_head"], "grow_vocab_to": 136},
    ),
    "llama-lora-bias": ("llama", {"lora_bias": True}),
    "gpt2": ("gpt2", {}),
    "gpt2-dora-embedding": ("gpt2", {"use_dora": True, "target_modules": ["c_attn", "wte"]}),
    "bert": ("bert", {}),
    "t5": ("t5", {}),
}


@pytest.mark.parametrize("case", list(OK_CASES))
def test_compatible(case: str, bases: dict[str, TinyModel], root: Path) -> None:
    base_key, kwargs = OK_CASES[case]
    adapter = make_lora_adapter(bases[base_key], root / f"ok-{case}", **kwargs)
    report = check_compatibility(read_adapter(adapter.path), read_manifest(adapter.base.path))
    assert report.ok, report.format()
    assert report.warnings == [], report.format()
    assert report.modules_checked == len(read_adapter(adapter.path).modules)
    json.dumps(report.to_dict())
    if case == "llama-grown":
        grown = [n for n in report.notes if n.code == "vocabulary_grown"]
        assert {n.module for n in grown} == {"lm_head", "model.embed_tokens"}
        assert grown[0].expected == (128, 32) and grown[0].found == (136, 32)


@pytest.fixture(scope="module")
def llama_adapter(bases: dict[str, TinyModel], root: Path) -> Path:
    return make_lora_adapter(bases["llama"], root / "llama-adapter", use_dora=True).path


def test_other_hidden_size(llama_adapter: Path, bases: dict[str, TinyModel]) -> None:
    report = check_compatibility(
        read_adapter(llama_adapter), read_manifest(bases["llama-h64"].path)
    )
    assert not report.ok
    q = [p for p in report.problems if p.module == "model.layers.0.self_attn.q_proj"]
    assert {p.code for p in q} == {"shape_mismatch"}
    a = next(p for p in q if "lora_A" in p.message)
    assert (a.expected, a.found) == ((4, 64), (4, 32))
    assert "[64, 64]" in a.message
    assert any("DoRA magnitude" in p.message for p in q)
    text = report.format()
    assert text.startswith("INCOMPATIBLE") and "model.layers.0.self_attn.q_proj" in text


def test_fewer_layers(llama_adapter: Path, bases: dict[str, TinyModel]) -> None:
    report = check_compatibility(
        read_adapter(llama_adapter), read_manifest(bases["llama-1layer"].path)
    )
    missing = {p.module for p in report.problems if p.code == "missing_base_module"}
    assert missing == {f"model.layers.1.self_attn.{p}_proj" for p in "qkvo"}
    assert all(p.code == "missing_base_module" for p in report.problems)
    assert "indices 0..0" in report.problems[0].message


def test_more_layers_is_a_warning(llama_adapter: Path, bases: dict[str, TinyModel]) -> None:
    report = check_compatibility(
        read_adapter(llama_adapter), read_manifest(bases["llama-4layers"].path)
    )
    assert report.ok
    assert [w.code for w in report.warnings] == ["target_not_adapted"]
    assert "model.layers.2.self_attn" in report.warnings[0].message


def _rename_adapter(src: Path, dst: Path, old: str, new: str) -> Path:
    dst.mkdir()
    t = load_file(str(src / "adapter_model.safetensors"))
    save_file(
        {k.replace(old, new, 1): v for k, v in t.items()}, str(dst / "adapter_model.safetensors")
    )
    (dst / "adapter_config.json").write_bytes((src / "adapter_config.json").read_bytes())
    return dst


def test_adapter_trained_without_model_prefix(
    llama_adapter: Path, tmp_path: Path, bases: dict[str, TinyModel]
) -> None:
    """An adapter made on LlamaModel (no ``model.``) against a LlamaForCausalLM checkpoint."""
    bare = _rename_adapter(
        llama_adapter, tmp_path / "bare", "base_model.model.model.", "base_model.model."
    )
    report = check_compatibility(read_adapter(bare), read_manifest(bases["llama"].path))
    assert not report.ok
    assert [p.code for p in report.problems] == ["renamed_prefix"]
    assert report.prefix_rewrite == ("", "model.")
    assert "silently" in report.problems[0].message


def test_base_with_renamed_prefix(
    llama_adapter: Path, tmp_path: Path, bases: dict[str, TinyModel]
) -> None:
    renamed = tmp_path / "renamed-base"
    renamed.mkdir()
    t = load_file(str(bases["llama"].path / "model.safetensors"))
    save_file(
        {k.replace("model.layers.", "transformer.h."): v for k, v in t.items()},
        str(renamed / "model.safetensors"),
    )
    report = check_compatibility(read_adapter(llama_adapter), read_manifest(renamed))
    assert [p.code for p in report.problems] == ["renamed_prefix"]
    p = report.problems[0]
    assert p.details == {
        "adapter_prefix": "model.layers.",
        "base_prefix": "transformer.h.",
        "modules": 8,
    }
    assert "'model.layers....'" in p.message and "'transformer.h....'" in p.message


def test_other_architecture(llama_adapter: Path, bases: dict[str, TinyModel]) -> None:
    report = check_compatibility(read_adapter(llama_adapter), read_manifest(bases["gpt2"].path))
    assert "no_module_matches" in {p.code for p in report.problems}


def test_classifier_with_other_label_count(bases: dict[str, TinyModel], root: Path) -> None:
    adapter = make_lora_adapter(bases["bert"], root / "bert-adapter")
    report = check_compatibility(
        read_adapter(adapter.path), read_manifest(bases["bert-5labels"].path)
    )
    problems = {(p.module, p.tensor, p.expected, p.found) for p in report.problems}
    assert problems == {
        ("classifier", "classifier.weight", (5, 32), (3, 32)),
        ("classifier", "classifier.bias", (5,), (3,)),
    }


def test_rank_disagreeswith_config(
    llama_adapter: Path, tmp_path: Path, bases: dict[str, TinyModel]
) -> None:
    dst = _rename_adapter(llama_adapter, tmp_path / "rank", "x", "x")
    cfg = json.loads((dst / "adapter_config.json").read_text())
    cfg["rank_pattern"] = {"v_proj": 8}
    (dst / "adapter_config.json").write_text(json.dumps(cfg))
    report = check_compatibility(read_adapter(dst), read_manifest(bases["llama"].path))
    ranks = [p for p in report.problems if p.code == "rank_mismatch"]
    assert {p.module for p in ranks} == {
        "model.layers.0.self_attn.v_proj",
        "model.layers.1.self_attn.v_proj",
    }
    assert "rank_pattern" in ranks[0].message and "r=8" in ranks[0].message


def test_unmapped_tensor_is_a_problem(
    llama_adapter: Path, tmp_path: Path, bases: dict[str, TinyModel]
) -> None:
    dst = _rename_adapter(llama_adapter, tmp_path / "odd", "x", "x")
    t = load_file(str(dst / "adapter_model.safetensors"))
    t["base_model.model.model.layers.0.self_attn.q_proj.lora_C.weight"] = t[
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    ].clone()
    save_file(t, str(dst / "adapter_model.safetensors"))
    report = check_compatibility(read_adapter(dst), read_manifest(bases["llama"].path))
    assert [p.code for p in report.problems] == ["unmapped_tensor"]


def test_gpt2_without_fan_in_fan_out_is_a_warning(bases: dict[str, TinyModel], root: Path) -> None:
    adapter = make_lora_adapter(bases["gpt2"], root / "gpt2-nofifo", fan_in_fan_out=False)
    cfg_path = adapter.path / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    # PEFT turns fan_in_fan_out on for Conv1D and saves it; hand-written configs may not.
    assert cfg["fan_in_fan_out"] is True
    cfg["fan_in_fan_out"] = False
    cfg_path.write_text(json.dumps(cfg))
    report = check_compatibility(read_adapter(adapter.path), read_manifest(bases["gpt2"].path))
    assert report.ok
    # c_attn [32, 96] and c_fc [32, 128] are not square: they reveal the transposition.
    assert {w.code for w in report.warnings} == {"fan_in_fan_out"}
    assert {w.module for w in report.warnings} >= {"transformer.h.0.attn.c_attn"}


def test_exact_and_structural_match(llama_adapter: Path, bases: dict[str, TinyModel]) -> None:
    adapter = read_adapter(llama_adapter)
    trained_on = fingerprint(bases["llama"].path)
    exact = check_compatibility(adapter, trained_on, expected_fingerprint=trained_on.fingerprint)
    assert exact.match == "exact" and exact.ok and not exact.warnings
    other = fingerprint(bases["llama-other-weights"].path)
    assert other.structure_hash == trained_on.structure_hash
    structural = check_compatibility(adapter, other, expected_fingerprint=trained_on.fingerprint)
    assert structural.ok and structural.match == "structural"
    assert [w.code for w in structural.warnings] == ["structural_match_only"]
    unknown = check_compatibility(
        adapter, read_manifest(bases["llama"].path), expected_fingerprint=trained_on.fingerprint
    )
    assert unknown.match == "unverified" and [n.code for n in unknown.notes] == [
        "fingerprint_not_computed"
    ]


def test_a_match_hint_is_reported_under_the_verdict(
    llama_adapter: Path, bases: dict[str, TinyModel]
) -> None:
    report = check_compatibility(read_adapter(llama_adapter), read_manifest(bases["llama"].path))
    assert report.match_hint is None and report.to_dict()["match_hint"] is None
    assert "base match unverified:" not in report.format()
    report.match_hint = "pass the fingerprint for an exact match"
    lines = report.format().splitlines()
    assert lines[0].endswith("base match: unverified")
    assert lines[1] == "  base match unverified: pass the fingerprint for an exact match"
    assert report.to_dict()["match_hint"] == "pass the fingerprint for an exact match"


def test_cli_validate(llama_adapter: Path, bases: dict[str, TinyModel], tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["validate", str(llama_adapter), "--base", str(bases["llama"].path)])
    assert ok.exit_code == 0, ok.output
    assert "COMPATIBLE" in ok.output

    bad = runner.invoke(
        cli, ["validate", str(llama_adapter), "--base", str(bases["llama-h64"].path)]
    )
    assert bad.exit_code == 3
    assert "model.layers.0.self_attn.q_proj" in bad.output

    as_json = runner.invoke(
        cli, ["validate", str(llama_adapter), "--base", str(bases["llama-h64"].path), "--json"]
    )
    assert as_json.exit_code == 3
    doc = json.loads(as_json.stdout)
    assert doc["compatible"] is False and doc["problems"][0]["expected"]

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_bytes(
        (llama_adapter / "adapter_config.json").read_bytes()
    )
    (broken / "adapter_model.safetensors").write_bytes(
        (llama_adapter / "adapter_model.safetensors").read_bytes()[:100]
    )
    err = runner.invoke(
        cli, ["validate", str(broken), "--base", str(bases["llama"].path), "--json"]
    )
    assert err.exit_code == 1
    assert json.loads(err.stdout)["error"]["code"] == "safetensors_truncated"
    err_text = runner.invoke(cli, ["validate", str(broken), "--base", str(bases["llama"].path)])
    assert err_text.exit_code == 1 and "adapter_model.safetensors" in err_text.output

    usage = runner.invoke(cli, ["validate", str(llama_adapter)])
    assert usage.exit_code == 2


def test_trainable_tokens_checked_against_the_base(
    bases: dict[str, TinyModel], tmp_path: Path
) -> None:
    llama = bases["llama"]
    adapter = make_lora_adapter(
        llama, tmp_path / "tokens", target_modules=["q_proj"], trainable_token_indices=[3, 5, 7]
    )
    report = check_compatibility(read_adapter(adapter.path), read_manifest(llama.path))
    assert report.ok and report.token_modules_checked == 1, report.format()
    assert "1 trainable-token layer(s)" in report.format()

    beyond = with_config(adapter.path, tmp_path / "beyond", trainable_token_indices=[3, 5, 700])
    report = check_compatibility(read_adapter(beyond), read_manifest(llama.path))
    assert [f.code for f in report.problems] == ["token_out_of_range"]
    assert "[700]" in report.problems[0].message

    fewer = with_config(adapter.path, tmp_path / "fewer", trainable_token_indices=[3, 5])
    report = check_compatibility(read_adapter(fewer), read_manifest(llama.path))
    assert [f.code for f in report.problems] == ["shape_mismatch"]
    assert "2 token id(s)" in report.problems[0].message


def test_tokens_on_a_tied_output_layer_are_noted(tmp_path: Path) -> None:
    tied = make_llama(tmp_path / "tied", tie_word_embeddings=True)
    adapter = make_lora_adapter(
        tied,
        tmp_path / "adapter",
        target_modules=["q_proj"],
        trainable_token_indices={"lm_head": [6, 9]},
    )
    report = check_compatibility(read_adapter(adapter.path), read_manifest(tied.path))
    assert report.ok, report.format()
    (note,) = [f for f in report.notes if f.code == "tokens_on_tied_layer"]
    assert note.tensor == "model.embed_tokens.weight"
