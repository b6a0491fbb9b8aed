"""The merged folder's other files: config.json (updated), tokenizer and the rest.

A merged model must load with ``from_pretrained`` as the base did, so every non-weight file
of the base comes along; an adapter that grew the vocabulary brings the tokenizer that knows
the new tokens, and config.json records the new vocabulary size and output dtype.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loreg.errors import InvalidInput
from loreg.merge.sources import CONFIG_DTYPE_NAMES, AdapterSource, copy_file_hashed, is_weight_file
from loreg.merge.writer import OutputFile, json_bytes, write_bytes_atomic

TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "tokenizer.model",
        "spiece.model",
        "sentencepiece.bpe.model",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "chat_template.jinja",
        "chat_template.json",
    }
)


def read_config(base_dir: Path) -> dict[str, Any] | None:
    """The base's config.json, if it has one that is a JSON object."""
    path = base_dir / "config.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidInput(f"{path} is not valid JSON: {e}") from None
    return doc if isinstance(doc, dict) else None


def copy_side_files(
    base_dir: Path,
    sources: Sequence[AdapterSource],
    out: Path,
    config: dict[str, Any] | None,
    new_vocab: int | None,
    out_dtype: str | None,
) -> list[OutputFile]:
    """config.json (updated), generation config, tokenizer and other non-weight base files.

    Tokenizer files come from the first adapter folder that has any (an adapter that grew
    the vocabulary ships the tokenizer that knows the new tokens), else from the base.
    """
    files: dict[str, Path] = {
        p.name: p
        for p in sorted(base_dir.iterdir())
        if p.is_file() and not p.name.startswith(".") and not is_weight_file(p.name)
    }
    for src in sources:
        tokenizer = {
            p.name: p for p in src.path.iterdir() if p.is_file() and p.name in TOKENIZER_FILES
        }
        if tokenizer:
            files = {n: p for n, p in files.items() if n not in TOKENIZER_FILES}
            files.update(tokenizer)
            break
    written: list[OutputFile] = []
    for name, path in sorted(files.items()):
        if name == "config.json" and config is not None and (new_vocab or out_dtype):
            doc = dict(config)
            if new_vocab is not None:
                doc["vocab_size"] = new_vocab
            if out_dtype is not None:
                for key in ("dtype", "torch_dtype"):
                    if key in doc:
                        doc[key] = CONFIG_DTYPE_NAMES[out_dtype]
            written.append(write_bytes_atomic(out / name, json_bytes(doc)))
        else:
            written.append(copy_file_hashed(path, out / name))
    return written
