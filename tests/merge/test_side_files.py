"""The merged folder's other files: the base's, a grown vocabulary's tokenizer, config.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from loreg.errors import InvalidInput
from loreg.merge.side_files import copy_side_files, read_config
from loreg.merge.sources import AdapterSource
from tests.factories import TinyModel, make_llama, make_lora_adapter


@pytest.fixture
def base(tmp_path: Path) -> TinyModel:
    model = make_llama(tmp_path / "base")
    (model.path / "tokenizer.json").write_text('{"base": true}')
    (model.path / "generation_config.json").write_text('{"max_length": 7}')
    (model.path / ".hidden").write_text("not copied")
    return model


def _copy(
    base: TinyModel,
    out: Path,
    adapters: list[Path],
    new_vocab: int | None = None,
    out_dtype: str | None = None,
) -> dict[str, str]:
    out.mkdir()
    sources = [AdapterSource(p) for p in adapters]
    written = copy_side_files(base.path, sources, out, read_config(base.path), new_vocab, out_dtype)
    for f in written:  # every file's digest is what was written
        assert f.sha256 == hashlib.sha256((out / f.path).read_bytes()).hexdigest()
    return {f.path: (out / f.path).read_text() for f in written}


def test_the_base_non_weight_files_come_along(base: TinyModel, tmp_path: Path) -> None:
    adapter = make_lora_adapter(base, tmp_path / "adapter").path
    files = _copy(base, tmp_path / "out", [adapter])
    assert set(files) == {"config.json", "generation_config.json", "tokenizer.json"}
    assert files["config.json"] == (base.path / "config.json").read_text()  # unchanged bytes
    assert json.loads(files["tokenizer.json"]) == {"base": True}


def test_an_adapter_tokenizer_replaces_the_base_one(base: TinyModel, tmp_path: Path) -> None:
    plain = make_lora_adapter(base, tmp_path / "plain").path
    grown = make_lora_adapter(base, tmp_path / "grown").path
    (grown / "tokenizer.json").write_text('{"grown": true}')
    (grown / "added_tokens.json").write_text("{}")
    files = _copy(base, tmp_path / "out", [plain, grown])
    assert json.loads(files["tokenizer.json"]) == {"grown": True}
    assert "added_tokens.json" in files


def test_config_gets_the_new_vocabulary_and_dtype(base: TinyModel, tmp_path: Path) -> None:
    adapter = make_lora_adapter(base, tmp_path / "adapter").path
    config = json.loads(
        _copy(base, tmp_path / "out", [adapter], new_vocab=136, out_dtype="BF16")["config.json"]
    )
    assert config["vocab_size"] == 136
    dtype_keys = [k for k in ("dtype", "torch_dtype") if k in config]
    assert dtype_keys and all(config[k] == "bfloat16" for k in dtype_keys)


def test_read_config(tmp_path: Path) -> None:
    assert read_config(tmp_path) is None
    (tmp_path / "config.json").write_text("[1]")
    assert read_config(tmp_path) is None
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        read_config(tmp_path)
