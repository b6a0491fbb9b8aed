"""The read side of the Hub protocol, driven by the real ``huggingface_hub`` client against a
live registry on both backends (versions pushed with loreg's own wire protocol)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.factories.hub import hf_api, publishable, register_named_base, tree_digests
from tests.factories.pushes import Models, push
from tests.fixtures.api import RegistryServer, unique_name

README = b"---\nbase_model: placeholder\nlicense: apache-2.0\ntags:\n- demo\n---\n# An adapter\n"


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def published(registry_server: RegistryServer, models: Models, tmp_path: Path) -> dict:
    """alice/<name>: v1 (tagged ``stable``, with extra files) and v2 (another adapter)."""
    alice = registry_server.make_user()
    base = register_named_base(registry_server, models.base)
    name = unique_name("ad")
    v1 = publishable(
        models.adapter.path,
        tmp_path / "v1",
        base,
        **{
            "README.md": README.replace(b"placeholder", base.encode()),
            "extra/notes.txt": b"kept with the version\n",
        },
    )
    v2 = publishable(models.adapter_r8.path, tmp_path / "v2", base)
    client = registry_server.client(alice.token)
    assert push(client, v1, f"{alice.name}/{name}").status_code == 201
    r = client.put(f"/adapters/{alice.name}/{name}/tags/stable", json={"version": 1})
    assert r.status_code == 200, r.text
    assert push(client, v2, f"{alice.name}/{name}").status_code == 201
    return {"user": alice, "repo": f"{alice.name}/{name}", "v1": v1, "v2": v2, "base": base}


def test_snapshot_download_is_byte_identical(
    registry_server: RegistryServer, published: dict, hf_cache: Path, tmp_path: Path
) -> None:
    token = published["user"].token
    at_tag = snapshot_download(
        published["repo"],
        revision="stable",
        endpoint=registry_server.base_url,
        token=token,
        cache_dir=hf_cache,
    )
    assert tree_digests(Path(at_tag)) == tree_digests(published["v1"])
    into = snapshot_download(
        published["repo"],
        endpoint=registry_server.base_url,
        token=token,
        local_dir=tmp_path / "local",
    )
    assert tree_digests(Path(into)) == tree_digests(published["v2"])


def test_hf_hub_download_of_main_a_tag_a_number_and_a_commit(
    registry_server: RegistryServer, published: dict, hf_cache: Path
) -> None:
    kw = {
        "endpoint": registry_server.base_url,
        "token": published["user"].token,
        "cache_dir": hf_cache,
    }
    weights = "adapter_model.safetensors"
    main = hf_hub_download(published["repo"], weights, **kw)
    tag = hf_hub_download(published["repo"], weights, revision="stable", **kw)
    assert _sha(main) == _sha(published["v2"] / weights)
    assert _sha(tag) == _sha(published["v1"] / weights)
    number = hf_hub_download(published["repo"], weights, revision="1", **kw)
    assert _sha(number) == _sha(tag)
    info = hf_api(registry_server, published["user"].token).model_info(
        published["repo"], revision="stable"
    )
    by_commit = hf_hub_download(published["repo"], "extra/notes.txt", revision=info.sha, **kw)
    assert Path(by_commit).read_bytes() == b"kept with the version\n"


def test_model_info_refs_and_commits(registry_server: RegistryServer, published: dict) -> None:
    api = hf_api(registry_server, published["user"].token)
    info = api.model_info(published["repo"], files_metadata=True)
    assert re.fullmatch(r"[0-9a-f]{40}", info.sha)
    files = {s.rfilename: s for s in info.siblings}
    assert set(files) == set(tree_digests(published["v2"]))
    for rel, digest in tree_digests(published["v2"]).items():
        assert files[rel].lfs.sha256 == digest
        assert files[rel].size == (published["v2"] / rel).stat().st_size
    assert info.private is True
    assert info.card_data["base_model"] == published["base"]
    assert info.library_name == "peft"

    old = api.model_info(published["repo"], revision="stable")
    assert old.card_data["license"] == "apache-2.0"  # the README's own metadata

    refs = api.list_repo_refs(published["repo"])
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", info.sha)]
    assert [(t.name, t.target_commit) for t in refs.tags] == [("stable", old.sha)]

    commits = api.list_repo_commits(published["repo"])
    assert [c.commit_id for c in commits] == [info.sha, old.sha]
    assert sorted(api.list_repo_files(published["repo"], revision="stable")) == sorted(
        tree_digests(published["v1"])
    )


def test_private_repo_is_indistinguishable_from_a_missing_one(
    registry_server: RegistryServer, published: dict, hf_cache: Path
) -> None:
    outsider = registry_server.make_user()
    missing = f"{published['user'].name}/{unique_name('nope')}"
    for token in (None, outsider.token):
        for repo in (published["repo"], missing):
            with pytest.raises(RepositoryNotFoundError):
                hf_hub_download(
                    repo,
                    "adapter_config.json",
                    endpoint=registry_server.base_url,
                    token=token or False,
                    cache_dir=hf_cache,
                )
            with pytest.raises(RepositoryNotFoundError):
                hf_api(registry_server, token).model_info(repo)
        # byte for byte the same answer for "private" and "missing"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answers = [
            httpx.get(registry_server.url(f"/api/models/{repo}"), headers=headers)
            for repo in (published["repo"], missing)
        ]
        assert answers[0].status_code == answers[1].status_code == (404 if token else 401)
        assert answers[0].content.replace(published["repo"].encode(), b"") == answers[
            1
        ].content.replace(missing.encode(), b"")
        assert answers[0].headers["x-error-code"] == "RepoNotFound"


def test_unknown_revision_and_file(
    registry_server: RegistryServer, published: dict, hf_cache: Path
) -> None:
    kw = {
        "endpoint": registry_server.base_url,
        "token": published["user"].token,
        "cache_dir": hf_cache,
    }
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(published["repo"], "adapter_config.json", revision="no-such-tag", **kw)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(published["repo"], "no/such/file.bin", **kw)


def test_public_repo_reads_anonymously_and_ranges(
    registry_server: RegistryServer, published: dict, hf_cache: Path
) -> None:
    ns, name = published["repo"].split("/")
    made_public = registry_server.admin.patch(f"/adapters/{ns}/{name}", json={"public": True})
    assert made_public.status_code == 200
    path = hf_hub_download(
        published["repo"],
        "adapter_config.json",
        endpoint=registry_server.base_url,
        token=False,
        cache_dir=hf_cache,
    )
    data = Path(path).read_bytes()
    assert data == (published["v2"] / "adapter_config.json").read_bytes()
    r = httpx.get(
        registry_server.url(f"/{published['repo']}/resolve/main/adapter_config.json"),
        headers={"Range": "bytes=2-9"},
        follow_redirects=True,
    )
    assert r.status_code == 206 and r.content == data[2:10]
    head = httpx.head(registry_server.url(f"/{published['repo']}/resolve/main/adapter_config.json"))
    assert head.headers["x-linked-size"] == str(len(data))
    assert head.headers["x-linked-etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert re.fullmatch(r"[0-9a-f]{40}", head.headers["x-repo-commit"])


def test_merged_checkpoint_by_repo_id(
    registry_server: RegistryServer, models: Models, hf_cache: Path, tmp_path: Path
) -> None:
    """``_merges/JOB_ID``: a merge job's output, downloadable like a model repo."""
    import os
    import subprocess
    import sys

    from loreg.client import Client

    alice = registry_server.make_user()
    base = f"acme/{unique_name('full')}"
    client = Client(registry_server.base_url, alice.token, home=tmp_path / "client")
    client.register_base(models.base.path, base)
    client.push(models.adapter.path, f"{alice.name}/m", base=base)
    job = client.merge([f"{alice.name}/m"], base, max_shard_bytes=1 << 20)
    repo = f"_merges/{job.id}"
    with pytest.raises(RepositoryNotFoundError):  # not finished: not there yet
        hf_api(registry_server, alice.token).model_info(repo)
    s = registry_server.settings
    env = {
        **os.environ,
        "LOREG_HOME": str(s.home),
        "LOREG_DATABASE_URL": s.effective_database_url,
        "LOREG_STORAGE_URL": s.effective_storage_url,
    }
    if s.s3_endpoint_url:
        env.update(LOREG_S3_ENDPOINT_URL=s.s3_endpoint_url, LOREG_S3_REGION="us-east-1")
    for _ in range(4):
        if client.get_job(job.id).status == "succeeded":
            break
        subprocess.run(
            [str(Path(sys.executable).parent / "loreg"), "worker", "--once"],
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    assert client.get_job(job.id).status == "succeeded"
    client.download_job_outputs(job.id, tmp_path / "outputs")
    got = snapshot_download(
        repo, endpoint=registry_server.base_url, token=alice.token, cache_dir=hf_cache
    )
    assert tree_digests(Path(got)) == tree_digests(tmp_path / "outputs")
    assert "config.json" in tree_digests(Path(got))
    outsider = registry_server.make_user()
    for token in (outsider.token, None):
        with pytest.raises(RepositoryNotFoundError):
            hf_api(registry_server, token).model_info(repo)
    client.close()
