"""Base manifests and fingerprints: independent of sharding and order, streaming, exact."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from loreg.errors import InvalidDigest
from loreg.formats.base import (
    BaseFormatError,
    FingerprintBuilder,
    fingerprint,
    read_manifest,
    structure_hash,
)
from loreg.formats.safetensors import SafetensorsError
from tests.factories import make_gpt2, make_llama


def _reference_fingerprint(folder: Path) -> str:
    """The documented canonical encoding, computed independently of loreg.formats.base."""
    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    lines = []
    for name in sorted(tensors):
        t = tensors[name]
        dtype = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}[t.dtype]
        raw = t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
        rec = [name, dtype, list(t.shape), hashlib.sha256(raw).hexdigest()]
        lines.append(json.dumps(rec, separators=(",", ":")) + "\n")
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


@pytest.fixture(scope="module")
def llama_single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_llama(tmp_path_factory.mktemp("single") / "m").path


@pytest.fixture(scope="module")
def llama_sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_llama(tmp_path_factory.mktemp("sharded") / "m", max_shard_size="20KB").path


def test_manifest_from_headers(llama_single: Path) -> None:
    m = read_manifest(llama_single)
    assert m.fingerprint is None
    assert m.tensors["model.layers.0.self_attn.k_proj.weight"] == ("F32", (16, 32))
    assert m.files["lm_head.weight"] == "model.safetensors"
    assert m.structure_hash.startswith("sha256:") and len(m.structure_hash) == 7 + 64
    assert m.num_parameters == sum(
        t.numel() for t in load_file(str(llama_single / "model.safetensors")).values()
    )


def test_sharded_equals_single(llama_single: Path, llama_sharded: Path) -> None:
    assert (llama_sharded / "model.safetensors.index.json").is_file()
    single, sharded = fingerprint(llama_single), fingerprint(llama_sharded)
    assert len(set(sharded.files.values())) > 1
    assert single.tensors == sharded.tensors
    assert single.structure_hash == sharded.structure_hash
    assert single.fingerprint == sharded.fingerprint == _reference_fingerprint(llama_single)
    assert read_manifest(llama_sharded).structure_hash == single.structure_hash


def test_order_and_metadata_do_not_matter(llama_single: Path, tmp_path: Path) -> None:
    tensors = load_file(str(llama_single / "model.safetensors"))
    names = sorted(tensors, reverse=True)
    half = len(names) // 2
    out = tmp_path / "reordered"
    out.mkdir()
    save_file(
        {n: tensors[n] for n in names[:half]}, str(out / "b-1.safetensors"), metadata={"x": "1"}
    )
    save_file({n: tensors[n] for n in names[half:]}, str(out / "a-2.safetensors"))
    index = {
        "weight_map": {n: "b-1.safetensors" for n in names[:half]}
        | {n: "a-2.safetensors" for n in names[half:]}
    }
    (out / "model.safetensors.index.json").write_text(json.dumps(index))
    assert fingerprint(out).fingerprint == fingerprint(llama_single).fingerprint


def test_one_changed_value_changes_fingerprint_not_structure(
    llama_single: Path, tmp_path: Path
) -> None:
    tensors = load_file(str(llama_single / "model.safetensors"))
    tensors["model.norm.weight"][3] += 1e-3
    out = tmp_path / "changed"
    out.mkdir()
    save_file(tensors, str(out / "model.safetensors"))
    a, b = fingerprint(llama_single), fingerprint(out)
    assert a.structure_hash == b.structure_hash
    assert a.fingerprint != b.fingerprint


def test_workers_and_chunks_agree_and_progress_reaches_total(llama_sharded: Path) -> None:
    seen: list[tuple[int, int]] = []
    one = fingerprint(llama_sharded, workers=1, chunk_size=4096)
    two = fingerprint(llama_sharded, lambda d, t: seen.append((d, t)), workers=2, chunk_size=1000)
    assert one.fingerprint == two.fingerprint
    assert seen[-1][0] == seen[-1][1] > 0
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_builder_is_order_independent() -> None:
    records = [
        ("b", "F32", (2, 3), "ab" * 32),
        ("a", "BF16", (), "cd" * 32),
        ("c", "I64", (5,), "ef" * 32),
    ]
    one, two = FingerprintBuilder(), FingerprintBuilder()
    for r in records:
        one.add(*r)
    for r in reversed(records):
        two.add(*r)
    assert one.fingerprint() == two.fingerprint() == "sha256:" + one.hexdigest()
    expected = "".join(
        json.dumps([n, d, list(s), h], separators=(",", ":")) + "\n"
        for n, d, s, h in sorted(records)
    )
    assert one.digest() == hashlib.sha256(expected.encode()).digest()
    with pytest.raises(ValueError, match="twice"):
        one.add("a", "F32", (1,), "00" * 32)
    with pytest.raises(InvalidDigest, match="sha256"):
        one.add("z", "F32", (1,), "xyz")
    assert structure_hash({"x": ("F32", (1, 2))}) != structure_hash({"x": ("F32", (2, 1))})


def test_tied_lm_head_alias(tmp_path: Path) -> None:
    gpt2 = read_manifest(make_gpt2(tmp_path / "gpt2").path)
    assert "lm_head.weight" not in gpt2.tensors
    assert gpt2.aliases == {"lm_head.weight": "transformer.wte.weight"}
    untied = read_manifest(make_llama(tmp_path / "llama").path)
    assert untied.aliases == {}


def test_broken_folders(llama_sharded: Path, tmp_path: Path) -> None:
    with pytest.raises(BaseFormatError, match="not a folder"):
        read_manifest(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BaseFormatError, match="no model"):
        read_manifest(empty)
    (empty / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(BaseFormatError, match="pickled"):
        read_manifest(empty)

    index = json.loads((llama_sharded / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))

    def copy(name: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        for f in llama_sharded.iterdir():
            (d / f.name).write_bytes(f.read_bytes())
        return d

    missing = copy("missing")
    (missing / shards[0]).unlink()
    with pytest.raises(BaseFormatError, match="missing"):
        read_manifest(missing)

    wrong = copy("wrong")
    idx = dict(index)
    idx["weight_map"] = dict(
        index["weight_map"],
        **{
            "lm_head.weight": shards[-1]
            if index["weight_map"]["lm_head.weight"] != shards[-1]
            else shards[0]
        },
    )
    (wrong / "model.safetensors.index.json").write_text(json.dumps(idx))
    with pytest.raises(BaseFormatError, match="does not contain"):
        read_manifest(wrong)

    escape = copy("escape")
    idx = {"weight_map": {"x": "../../etc/passwd"}}
    (escape / "model.safetensors.index.json").write_text(json.dumps(idx))
    with pytest.raises(BaseFormatError, match="outside"):
        read_manifest(escape)

    truncated = copy("truncated")
    data = (truncated / shards[0]).read_bytes()
    (truncated / shards[0]).write_bytes(data[: len(data) - 10])
    with pytest.raises(SafetensorsError) as e:
        fingerprint(truncated)
    assert shards[0] in str(e.value)


def test_duplicate_tensor_across_shards(tmp_path: Path) -> None:
    save_file({"x": torch.zeros(2)}, str(tmp_path / "a.safetensors"))
    save_file({"x": torch.ones(2), "y": torch.ones(1)}, str(tmp_path / "b.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}})
    )
    with pytest.raises(BaseFormatError, match="both"):
        read_manifest(tmp_path)
