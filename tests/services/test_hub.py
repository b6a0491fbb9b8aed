"""The pure parts of the Hub view: commit parsing, card metadata, git object ids."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess

import pytest

from loreg.errors import InvalidInput
from loreg.services import hub


def _ndjson(*items: dict) -> bytes:
    return b"\n".join(json.dumps(i).encode() for i in items)


def test_parse_commit_reads_every_operation() -> None:
    body = _ndjson(
        {"key": "header", "value": {"summary": "s", "description": "d", "parentCommit": "ab" * 20}},
        {
            "key": "file",
            "value": {
                "path": "a.txt",
                "encoding": "base64",
                "content": base64.b64encode(b"hello").decode(),
            },
        },
        {
            "key": "lfsFile",
            "value": {"path": "w.bin", "algo": "sha256", "oid": "1" * 64, "size": 3},
        },
        {"key": "lfsFile", "value": {"path": "copy.bin", "algo": "sha256", "oid": "2" * 64}},
        {"key": "deletedFile", "value": {"path": "old.txt"}},
        {"key": "deletedFolder", "value": {"path": "logs/"}},
    )
    req = hub.parse_commit(body)
    digest = "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert (req.summary, req.description, req.parent_commit) == ("s", "d", "ab" * 20)
    assert req.added["a.txt"].digest == digest and req.inline[digest] == b"hello"
    assert req.added["w.bin"].size == 3 and req.added["copy.bin"].size == -1
    assert req.deleted_files == ["old.txt"] and req.deleted_folders == ["logs"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[1]",
        _ndjson({"key": "header", "value": {"summary": 3}}),
        _ndjson({"key": "file", "value": {"path": "/abs", "content": ""}}),
        _ndjson({"key": "lfsFile", "value": {"path": "a", "oid": "A" * 64, "size": 1}}),
        _ndjson({"key": "lfsFile", "value": {"path": "a", "oid": "1" * 64, "size": -1}}),
        _ndjson({"key": "header", "value": {"parentCommit": "not-hex"}}),
    ],
)
def test_parse_commit_refuses_malformed_lines(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        hub.parse_commit(body)


def test_front_matter() -> None:
    assert hub.front_matter("# no metadata") is None
    assert hub.front_matter("---\nbase_model: a/b\ntags: [x]\n---\ntext") == {
        "base_model": "a/b",
        "tags": ["x"],
    }
    assert hub.front_matter("---\n---\n") == {}
    with pytest.raises(InvalidInput):
        hub.front_matter("---\n- a list\n---\n")
    with pytest.raises(InvalidInput):
        hub.front_matter("---\nkey: [unclosed\n---\n")


def test_git_ids_match_git() -> None:
    """The blob ids are git's own (``git hash-object``), pointers included."""
    f = hub.HubFile("w.bin", "sha256:" + "ab" * 32, 1234)
    for content in (b"", b"hello\n", f.pointer):
        out = (
            subprocess.run(
                ["git", "hash-object", "--stdin"], input=content, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )
        assert hub.git_blob_id(content) == out
    assert f.blob_id == hub.git_blob_id(f.pointer)
    assert hub.commit_id("sha256:" + "cd" * 32) == ("cd" * 32)[:40]
