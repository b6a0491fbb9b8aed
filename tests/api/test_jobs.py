"""Jobs over HTTP on both backends: submitting and cancelling need a write-scoped token and
read access to every input; a job's outputs are readable by who may see the job, and a
digest of one is no way in for anyone else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from loreg.worker.loop import Worker
from tests.factories.pushes import (
    Models,
    build_models,
    folder_files,
    push,
    register_base,
    upload,
)
from tests.fixtures.api import RegistryServer, unique_name


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return build_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def owner(registry_server: RegistryServer, models: Models) -> dict[str, Any]:
    """A user with a private adapter on a registered base."""
    account = registry_server.make_user()
    client = registry_server.client(account.token)
    base = f"test/{unique_name('B')}"
    assert register_base(client, models.base, base).status_code == 201
    r = push(client, models.adapter.path, f"{account.name}/private", base=base)
    assert r.status_code == 201, r.text
    return {"account": account, "client": client, "base": base, "ref": f"{account.name}/private@1"}


def _export(client: httpx.Client, ref: str) -> httpx.Response:
    return client.post(
        "/jobs", json={"type": "export", "params": {"adapter": ref, "dtype": "float16"}}
    )


def test_read_scoped_tokens_cannot_submit_or_cancel_jobs(
    registry_server: RegistryServer, owner: dict[str, Any]
) -> None:
    reader = registry_server.make_token(owner["account"], scope="read")
    rc = registry_server.client(reader.token)
    before = rc.get("/jobs").json()["jobs"]  # the push's own validation
    for job_type, params in (
        ("export", {"adapter": owner["ref"], "dtype": "float16"}),
        ("validate", {"adapter": owner["ref"]}),
        ("merge", {"base": owner["base"], "adapters": [owner["ref"]]}),
        ("combine", {"adapters": [owner["ref"]], "target": f"{reader.name}/c"}),
    ):
        r = rc.post("/jobs", json={"type": job_type, "params": params})
        assert r.status_code == 403, (job_type, r.text)
        assert r.json()["error"]["details"]["required_scope"] == "write"
    assert rc.get("/jobs").json()["jobs"] == before  # nothing was queued

    job = _export(owner["client"], owner["ref"])
    assert job.status_code == 201, job.text
    r = rc.post(f"/jobs/{job.json()['id']}/cancel")
    assert r.status_code == 403 and r.json()["error"]["details"]["required_scope"] == "write"
    assert rc.get(f"/jobs/{job.json()['id']}").json()["status"] == "queued"
    assert owner["client"].post(f"/jobs/{job.json()['id']}/cancel").json()["status"] == "cancelled"


def test_jobs_need_read_access_to_every_input(
    registry_server: RegistryServer, owner: dict[str, Any]
) -> None:
    outsider = registry_server.client(registry_server.make_user().token)
    for ref in (owner["ref"], f"{owner['account'].name}/no-such-adapter@1"):
        r = _export(outsider, ref)
        assert r.status_code == 404, r.text
    assert outsider.get("/jobs").json()["jobs"] == []


def test_job_outputs_cannot_be_claimed_by_digest(
    registry_server: RegistryServer, owner: dict[str, Any], models: Models, tmp_path: Path
) -> None:
    job = _export(owner["client"], owner["ref"]).json()
    worker = Worker(registry_server.settings, worker_id="test-worker", device="cpu")
    try:
        assert worker.run(once=True) >= 1
    finally:
        worker.close()
    done = owner["client"].get(f"/jobs/{job['id']}").json()
    assert done["status"] == "succeeded", done
    outputs = owner["client"].get(f"/jobs/{job['id']}/outputs").json()["files"]
    weights = next(f for f in outputs if f["path"] == "adapter_model.safetensors")
    shipped = {f["digest"] for f in folder_files(models.adapter.path)}
    assert weights["digest"] not in shipped  # float16: a new blob, only the job lists it
    assert owner["client"].head(f"/blobs/{weights['digest']}").status_code == 200

    thief = registry_server.make_user()
    tc = registry_server.client(thief.token)
    assert tc.get(f"/blobs/{weights['digest']}").status_code == 404
    assert tc.get(f"/jobs/{job['id']}/outputs").status_code == 404
    assert tc.post("/uploads", json={"digests": [weights["digest"]]}).json()["missing"] == [
        weights["digest"]
    ]
    mine = models.variant(tmp_path, 5).path
    files = folder_files(mine)
    upload(tc, mine, files)
    r = tc.post(
        f"/adapters/{thief.name}/loot/versions",
        json={
            "files": [
                *files,
                {"path": "loot.safetensors", "digest": weights["digest"], "size": weights["size"]},
            ],
            "base": owner["base"],
        },
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "blob_unknown", r.text
