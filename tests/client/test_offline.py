"""The record of pulled versions that offline pulls are served from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loreg.client.errors import NotCached
from loreg.client.models import Version
from loreg.client.offline import VersionIndex, ref_forms
from loreg.refs import FileEntry, manifest_digest

FILES: list[dict[str, Any]] = [
    {"path": "adapter_config.json", "digest": "sha256:" + "a" * 64, "size": 10},
    {"path": "adapter_model.safetensors", "digest": "sha256:" + "b" * 64, "size": 99},
]
DIGEST = manifest_digest(FileEntry(**f) for f in FILES)
VERSION = Version.from_api(
    {
        "namespace": "acme",
        "name": "bot",
        "number": 3,
        "digest": DIGEST,
        "files": FILES,
        "validation_report": {"big": "x" * 1000},
    }
)


def test_ref_forms_spell_each_reference_one_way() -> None:
    assert ref_forms("a", "b", "tag", "latest") == "a/b:latest"
    assert ref_forms("a", "b", "number", "3") == "a/b@3"
    assert ref_forms("a", "b", "digest", DIGEST) == f"a/b@{DIGEST}"


def test_recorded_versions_are_found_by_each_reference(tmp_path: Path) -> None:
    index = VersionIndex(tmp_path)
    keys = ["acme/bot:prod", "acme/bot@3", f"acme/bot@{DIGEST}"]
    index.record("http://r1", keys, VERSION)
    for key in keys[:2]:
        found = index.lookup("http://r1", key)
        assert found.digest == DIGEST and found.to_dict()["files"] == FILES
        assert found.files == [FileEntry(**f) for f in FILES]
        assert "validation_report" not in found.to_dict()  # only what a pull needs is kept
    # a tag or number belongs to its registry ...
    with pytest.raises(NotCached, match="acme/bot:prod is not in the local cache"):
        index.lookup("http://r2", "acme/bot:prod")
    # ... a digest names the content, whichever registry it came from
    assert index.lookup("http://r2", f"acme/bot@{DIGEST}", digest=DIGEST).number == 3
    # but only under the name it was pulled as
    with pytest.raises(NotCached):
        index.lookup("http://r1", f"other/bot@{DIGEST}", digest=DIGEST)


def test_a_tampered_record_is_not_served(tmp_path: Path) -> None:
    index = VersionIndex(tmp_path)
    index.record("http://r1", ["acme/bot:prod"], VERSION)
    doc_path = tmp_path / "versions" / (DIGEST.removeprefix("sha256:") + ".json")
    doc = json.loads(doc_path.read_text())
    doc["files"][1]["digest"] = "sha256:" + "c" * 64  # no longer what the digest says
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(NotCached):
        index.lookup("http://r1", "acme/bot:prod")
    doc_path.write_text("{not json")
    with pytest.raises(NotCached):
        index.lookup("http://r1", "acme/bot:prod")


def test_recording_never_fails_a_pull(tmp_path: Path) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    VersionIndex(blocked).record("http://r1", ["acme/bot:prod"], VERSION)  # no exception
    not_a_digest = Version.from_api({**VERSION.to_dict(), "digest": "md5:0"})
    VersionIndex(tmp_path).record("http://r1", ["acme/bot:prod"], not_a_digest)
    assert not (tmp_path / "refs.json").exists()


def test_a_later_pull_moves_the_tag(tmp_path: Path) -> None:
    index = VersionIndex(tmp_path)
    index.record("http://r1", ["acme/bot:prod"], VERSION)
    files2 = [dict(FILES[0]), {**FILES[1], "digest": "sha256:" + "d" * 64}]
    digest2 = manifest_digest(FileEntry(**f) for f in files2)
    index.record(
        "http://r1",
        ["acme/bot:prod"],
        Version.from_api({**VERSION.to_dict(), "number": 4, "digest": digest2, "files": files2}),
    )
    assert index.lookup("http://r1", "acme/bot:prod").number == 4
