"""The write side of the Hub protocol with the real ``huggingface_hub`` client, on both
backends: ``create_repo``, ``upload_folder``/``upload_file``/``delete_file`` become loreg
versions through the same checks as ``loreg push``."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.factories.hub import hf_api, publishable, register_named_base, tree_digests
from tests.factories.pushes import Models
from tests.fixtures.api import RegistryServer, unique_name


def _versions(server: RegistryServer, repo: str) -> list[dict]:
    r = server.admin.get(f"/adapters/{repo}/versions")
    assert r.status_code == 200, r.text
    return r.json()["versions"]


def test_upload_folder_creates_a_validated_version_once(
    registry_server: RegistryServer, models: Models, tmp_path: Path
) -> None:
    alice = registry_server.make_user()
    base = register_named_base(registry_server, models.base)
    folder = publishable(
        models.adapter.path,
        tmp_path / "out",
        base,
        **{
            "training_args.bin": b"\x80\x04pickle-never-loaded.",
            "tokenizer/tokenizer_config.json": b"{}",
        },
    )
    api = hf_api(registry_server, alice.token)
    repo = f"{alice.name}/{unique_name('ad')}"
    url = api.create_repo(repo)
    assert url.repo_id == repo
    info = api.upload_folder(repo_id=repo, folder_path=folder, commit_message="first")
    [version] = _versions(registry_server, repo)
    assert info.oid == version["digest"][7:47]
    assert version["base"] == base and version["description"] == "first"
    assert {f["path"] for f in version["files"]} == set(tree_digests(folder))
    assert version["validation_state"] in ("pending", "valid")  # the validate job is queued

    # the same folder again: no new version, the same commit
    again = api.upload_folder(repo_id=repo, folder_path=folder, commit_message="again")
    assert again.oid == info.oid and len(_versions(registry_server, repo)) == 1
    # one more file: a new version carrying the others over
    second = api.upload_file(
        path_or_fileobj=b"notes\n",
        path_in_repo="notes.txt",
        repo_id=repo,
        commit_message="add notes",
    )
    versions = _versions(registry_server, repo)
    assert [v["number"] for v in versions] == [2, 1] and second.oid == versions[0]["digest"][7:47]
    assert {f["path"] for f in versions[0]["files"]} == set(tree_digests(folder)) | {"notes.txt"}
    # deleting it gives back the first content: that is version 1 again, and main points at it
    back = api.delete_file("notes.txt", repo_id=repo, commit_message="drop the notes")
    assert back.oid == info.oid and len(_versions(registry_server, repo)) == 2
    assert api.model_info(repo).sha == info.oid
    # the Hub's answer to an existing repo
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo(repo)
    assert exc.value.response.status_code == 409
    assert api.create_repo(repo, exist_ok=True).repo_id == repo


def test_identical_commit_over_the_wire_creates_nothing(
    registry_server: RegistryServer, models: Models, tmp_path: Path
) -> None:
    alice = registry_server.make_user()
    base = register_named_base(registry_server, models.base)
    folder = publishable(models.adapter.path, tmp_path / "out", base)
    api = hf_api(registry_server, alice.token)
    repo = f"{alice.name}/{unique_name('ad')}"
    api.create_repo(repo)
    first = api.upload_folder(repo_id=repo, folder_path=folder)
    lines = [{"key": "header", "value": {"summary": "same bytes", "description": ""}}]
    for rel, sha in tree_digests(folder).items():
        lines.append(
            {
                "key": "lfsFile",
                "value": {
                    "path": rel,
                    "algo": "sha256",
                    "oid": sha,
                    "size": (folder / rel).stat().st_size,
                },
            }
        )
    r = httpx.post(
        registry_server.url(f"/api/models/{repo}/commit/main"),
        content="\n".join(json.dumps(x) for x in lines),
        headers={**alice.headers, "Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["commitOid"] == first.oid and r.json()["loreg"]["created"] is False
    assert len(_versions(registry_server, repo)) == 1


def test_incompatible_upload_is_refused_with_the_report(
    registry_server: RegistryServer, models: Models, tmp_path: Path
) -> None:
    alice = registry_server.make_user()
    base = register_named_base(registry_server, models.base)
    folder = publishable(models.other_adapter.path, tmp_path / "out", base)  # hidden 48 != 32
    api = hf_api(registry_server, alice.token)
    repo = f"{alice.name}/{unique_name('ad')}"
    api.create_repo(repo)
    with pytest.raises(HfHubHTTPError) as exc:
        api.upload_folder(repo_id=repo, folder_path=folder)
    message = str(exc.value)
    assert exc.value.response.status_code == 422
    assert f"incompatible with base model '{base}'" in message
    assert "shape_mismatch" in message and "q_proj" in message
    assert _versions(registry_server, repo) == []


def test_base_named_by_the_card(
    registry_server: RegistryServer, models: Models, tmp_path: Path
) -> None:
    """A config whose base_model_name_or_path is a local path: the card's base_model counts."""
    alice = registry_server.make_user()
    base = register_named_base(registry_server, models.base)
    folder = publishable(
        models.adapter.path,
        tmp_path / "out",
        "/data/checkpoints/base",
        **{"README.md": f"---\nbase_model: {base}\n---\n# x\n".encode()},
    )
    api = hf_api(registry_server, alice.token)
    repo = f"{alice.name}/{unique_name('ad')}"
    api.create_repo(repo)
    api.upload_folder(repo_id=repo, folder_path=folder)
    assert _versions(registry_server, repo)[0]["base"] == base
    # without the card the push names what is missing
    bare = publishable(models.adapter_r8.path, tmp_path / "bare", "/data/checkpoints/base")
    (bare / "README.md").unlink()
    with pytest.raises(HfHubHTTPError) as exc:
        api.upload_folder(repo_id=f"{alice.name}/{unique_name('ad')}", folder_path=bare)
    assert "base_model_name_or_path is not a registered base model" in str(exc.value)


def test_scopes_and_roles_apply(
    registry_server: RegistryServer, models: Models, tmp_path: Path
) -> None:
    alice = registry_server.make_user()
    base = register_named_base(registry_server, models.base)
    folder = publishable(models.adapter.path, tmp_path / "out", base)
    repo = f"{alice.name}/{unique_name('ad')}"
    hf_api(registry_server, alice.token).create_repo(repo)
    reader = registry_server.make_token(alice, scope="read")
    with pytest.raises(HfHubHTTPError) as exc:
        hf_api(registry_server, reader.token).upload_folder(repo_id=repo, folder_path=folder)
    assert exc.value.response.status_code == 403 and "'write'-scoped token" in str(exc.value)
    outsider = registry_server.make_user()
    with pytest.raises(RepositoryNotFoundError):  # a private repo: not even its existence
        hf_api(registry_server, outsider.token).upload_folder(repo_id=repo, folder_path=folder)
    with pytest.raises(HfHubHTTPError) as exc:  # no write role in alice's namespace
        hf_api(registry_server, outsider.token).create_repo(f"{alice.name}/{unique_name('x')}")
    assert exc.value.response.status_code == 403
    assert _versions(registry_server, repo) == []


def test_whoami_and_metadata(registry_server: RegistryServer) -> None:
    alice = registry_server.make_user()
    me = hf_api(registry_server, alice.token).whoami()
    assert me["name"] == alice.name and me["auth"]["accessToken"]["role"] == "write"
    with pytest.raises(HfHubHTTPError):
        hf_api(registry_server, "lrg_not-a-token").whoami()
    ok = httpx.post(
        registry_server.url("/api/validate-yaml"),
        json={"content": "---\nlicense: mit\n---\n# x", "repoType": "model"},
    )
    assert ok.status_code == 200 and ok.json()["errors"] == []
    bad = httpx.post(
        registry_server.url("/api/validate-yaml"),
        json={"content": "---\n- [unclosed\n---\n", "repoType": "model"},
    )
    assert bad.status_code == 400 and "YAML" in bad.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json\n",
        b'{"key": "header"}\n',
        b'{"key": "nope", "value": {}}\n',
        b'{"key": "file", "value": {"path": "../x", "content": ""}}\n',
        b'{"key": "file", "value": {"path": "a", "content": "***"}}\n',
        b'{"key": "lfsFile", "value": {"path": "a", "oid": "zz", "size": 1}}\n',
        b'{"key": "lfsFile", "value": {"path": "a", "oid": "' + b"0" * 64 + b'", "size": 1}}\n',
        b'{"key": "deletedFile", "value": {"path": "never-there"}}\n',
    ],
)
def test_malformed_commits_are_4xx(registry_server: RegistryServer, body: bytes) -> None:
    alice = registry_server.make_user()
    r = httpx.post(
        registry_server.url(f"/api/models/{alice.name}/{unique_name('x')}/commit/main"),
        content=body,
        headers=alice.headers,
    )
    assert 400 <= r.status_code < 500, r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"]


def test_commit_elsewhere_than_main_and_operations_on_merges(
    registry_server: RegistryServer, models: Models, tmp_path: Path
) -> None:
    alice = registry_server.make_user()
    folder = publishable(models.adapter.path, tmp_path / "out", "x/y")
    with pytest.raises(HfHubHTTPError) as exc:
        hf_api(registry_server, alice.token).upload_folder(
            repo_id=f"{alice.name}/{unique_name('x')}", folder_path=folder, revision="dev"
        )
    assert "commits go to 'main'" in str(exc.value)
    r = httpx.post(
        registry_server.url("/api/models/_merges/abc/commit/main"),
        content=b"{}",
        headers=alice.headers,
    )
    assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"


def test_xet_clients_are_told_what_to_set(registry_server: RegistryServer) -> None:
    alice = registry_server.make_user()
    r = httpx.get(
        registry_server.url(f"/api/models/{alice.name}/x/xet-write-token/main"),
        headers=alice.headers,
    )
    assert r.status_code == 400 and "HF_HUB_DISABLE_XET=1" in r.json()["error"]


def test_commit_operation_add_with_bytes(
    registry_server: RegistryServer, models: Models, tmp_path: Path
) -> None:
    """``create_commit`` with in-memory files and an empty one (sent inline)."""
    alice = registry_server.make_user()
    base = register_named_base(registry_server, models.base)
    folder = publishable(models.adapter.path, tmp_path / "out", base)
    api = hf_api(registry_server, alice.token)
    repo = f"{alice.name}/{unique_name('ad')}"
    ops = [
        CommitOperationAdd(path_in_repo=p, path_or_fileobj=(folder / p).read_bytes())
        for p in tree_digests(folder)
    ]
    ops.append(CommitOperationAdd(path_in_repo="empty.txt", path_or_fileobj=b""))
    api.create_repo(repo, private=False)
    api.create_commit(repo, operations=ops, commit_message="bytes")
    [version] = _versions(registry_server, repo)
    sizes = {f["path"]: f["size"] for f in version["files"]}
    assert sizes["empty.txt"] == 0 and len(sizes) == len(ops)
    assert hf_api(registry_server, None).model_info(repo).private is False
