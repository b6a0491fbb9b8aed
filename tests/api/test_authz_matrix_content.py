"""The authorisation matrix, continued for adapters, versions, tags, blobs, bases, jobs and
webhook destinations.

Same principals, world and runner as ``test_authz_matrix`` (imported, not copied). The
world gains a registered base, a private adapter ``{org}/priv`` and a public one
``{org}/pub`` (one version each, pushed by the site admin). Rows that write get fresh
material per principal in ``prepare`` (a new variant pushed by the admin, a new tag).
A private adapter is a 404 to outsiders and anonymous callers, never a 403.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from tests.factories.authz_matrix import (
    PRINCIPALS,
    Case,
    World,
    build_world,
    expect,
    run_matrix,
)
from tests.factories.pushes import Models, build_models, folder_files, push, register_base, upload
from tests.fixtures.api import RegistryServer, unique_name

READERS = {
    "reader": 200,
    "writer": 200,
    "org_admin": 200,
    "org_admin_write_token": 200,
    "org_admin_read_token": 200,
    "site_admin": 200,
    "site_admin_write_token": 200,
    "site_admin_read_token": 200,
}
READ_ONLY_TOKENS = {"org_admin_read_token": 403, "site_admin_read_token": 403}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return build_models(tmp_path_factory.mktemp("models"))


def test_content_authorisation_matrix(
    registry_server: RegistryServer, models: Models, tmp_path: Path
) -> None:
    world = build_world(registry_server)
    admin = world.admin
    base = f"authz/{unique_name('B')}"
    assert register_base(admin, models.base, base).status_code == 201
    org = world.org
    assert push(admin, models.adapter.path, f"{org}/priv", base=base).status_code == 201
    pub = push(admin, models.adapter_r8.path, f"{org}/pub", base=base, public=True)
    assert pub.status_code == 201, pub.text

    def weights(version: dict[str, Any]) -> str:
        return next(
            f["digest"] for f in version["files"] if f["path"] == "adapter_model.safetensors"
        )

    priv_digest = weights(admin.get(f"/adapters/{org}/priv/versions/1").json())
    pub_digest = weights(pub.json())
    blob_ok = 307 if registry_server.backend == "postgres+s3" else 200
    seeds = itertools.count(1000)

    def fresh_files(w: World, p: str) -> dict[str, Any]:
        """New files, uploaded by the principal itself where its token can upload (a push
        may name only blobs its caller holds), else by the admin."""
        folder = models.variant(tmp_path, next(seeds)).path
        files = folder_files(folder)
        spec = PRINCIPALS[p]
        uploader = w.client(p) if spec is not None and spec[1] != "read" else admin
        upload(uploader, folder, files)
        return {"files": files}

    def fresh_job(w: World, p: str) -> dict[str, Any]:
        n = fresh_version(w, p)["n"]
        r = admin.post("/jobs", json={"type": "export", "params": {"adapter": f"{org}/priv@{n}"}})
        assert r.status_code == 201, r.text
        return {"job": r.json()["id"]}

    def fresh_version(w: World, p: str) -> dict[str, Any]:
        r = push(admin, models.variant(tmp_path, next(seeds)).path, f"{org}/priv", base=base)
        assert r.status_code == 201, r.text
        return {"n": str(r.json()["number"])}

    def fresh_tag(w: World, p: str) -> dict[str, Any]:
        name = unique_name("t")
        assert (
            admin.put(f"/adapters/{org}/priv/tags/{name}", json={"version": 1}).status_code == 200
        )
        return {"tag": name}

    def fresh_protected_tag(w: World, p: str) -> dict[str, Any]:
        name = unique_name("p")
        assert (
            admin.put(
                f"/adapters/{org}/priv/tags/{name}", json={"version": 1, "protected": True}
            ).status_code
            == 200
        )
        return {"tag": name}

    def fresh_deleted_version(w: World, p: str) -> dict[str, Any]:
        n = fresh_version(w, p)["n"]
        assert (
            admin.delete(
                f"/adapters/{org}/priv/versions/{n}", params={"reason": "matrix"}
            ).status_code
            == 200
        )
        return {"n": n}

    def new_name(w: World, p: str) -> dict[str, Any]:
        return {**fresh_files(w, p), "new": unique_name("n")}

    def values(extra: dict[str, Any]) -> Any:
        return lambda w, p: extra

    common = {"priv_digest": priv_digest, "pub_digest": pub_digest, "base": base}
    # an outsider learns nothing from a push: 403 whether or not the adapter exists
    push_expect = expect(201, outsider=403, reader=403, **READ_ONLY_TOKENS)
    admin_only = expect(403, outsider=404, org_admin=200, site_admin=200)
    cases = [
        # reads of a private adapter: members and site admins; 404 to everyone else
        Case(
            "show private adapter",
            "GET",
            "/adapters/{org}/priv",
            expect(404, anonymous=404, **READERS),
        ),
        Case(
            "list private versions",
            "GET",
            "/adapters/{org}/priv/versions",
            expect(404, anonymous=404, **READERS),
        ),
        Case(
            "show private version",
            "GET",
            "/adapters/{org}/priv/versions/1",
            expect(404, anonymous=404, **READERS),
        ),
        Case(
            "list private tags",
            "GET",
            "/adapters/{org}/priv/tags",
            expect(404, anonymous=404, **READERS),
        ),
        Case(
            "resolve private",
            "GET",
            "/resolve?ref={org}/priv:latest",
            expect(404, anonymous=404, **READERS),
        ),
        Case(
            "private blob",
            "GET",
            "/blobs/{priv_digest}",
            prepare=values(common),
            expect=expect(404, anonymous=404, **{k: blob_ok for k in READERS}),
        ),
        # public adapter: everyone (a bad token is still a 401)
        Case("show public adapter", "GET", "/adapters/{org}/pub", expect(200, anonymous=200)),
        Case("resolve public", "GET", "/resolve?ref={org}/pub@1", expect(200, anonymous=200)),
        Case(
            "public blob",
            "GET",
            "/blobs/{pub_digest}",
            prepare=values(common),
            expect=expect(blob_ok, anonymous=blob_ok),
        ),
        Case("search", "GET", "/adapters?namespace={org}", expect(200, anonymous=200)),
        Case("list bases", "GET", "/bases", expect(200, anonymous=200)),
        Case(
            "show base",
            "GET",
            "/bases/{base}",
            prepare=values(common),
            expect=expect(200, anonymous=200),
        ),
        # writes
        Case(
            "upload check",
            "POST",
            "/uploads",
            json={"digests": []},
            expect=expect(200, **READ_ONLY_TOKENS),
        ),
        Case(
            "push to private adapter",
            "POST",
            "/adapters/{org}/priv/versions",
            json={"files": "{files}", "base": "{base}"},
            prepare=lambda w, p: {**fresh_files(w, p), **common},
            expect=push_expect,
        ),
        Case(
            "create adapter in org",
            "POST",
            "/adapters/{org}/{new}/versions",
            json={"files": "{files}", "base": "{base}"},
            prepare=lambda w, p: {**new_name(w, p), **common},
            expect=expect(201, outsider=403, reader=403, **READ_ONLY_TOKENS),
        ),
        Case(
            "set tag",
            "PUT",
            "/adapters/{org}/priv/tags/{tag}",
            json={"version": 1},
            prepare=lambda w, p: {"tag": unique_name("s")},
            expect=expect(200, outsider=404, reader=403, **READ_ONLY_TOKENS),
        ),
        Case(
            "delete tag",
            "DELETE",
            "/adapters/{org}/priv/tags/{tag}",
            prepare=fresh_tag,
            expect=expect(204, outsider=404, reader=403, **READ_ONLY_TOKENS),
        ),
        Case(
            "move protected tag",
            "PUT",
            "/adapters/{org}/priv/tags/{tag}",
            json={"version": 1},
            prepare=fresh_protected_tag,
            expect=admin_only,
        ),
        Case(
            "describe adapter",
            "PATCH",
            "/adapters/{org}/priv",
            json={"description": "d"},
            expect=expect(200, outsider=404, reader=403, **READ_ONLY_TOKENS),
        ),
        Case(
            "change visibility",
            "PATCH",
            "/adapters/{org}/priv",
            json={"public": False},
            expect=admin_only,
        ),
        Case(
            "delete version",
            "DELETE",
            "/adapters/{org}/priv/versions/{n}?reason=gone",
            prepare=fresh_version,
            expect=expect(200, outsider=404, reader=403, **READ_ONLY_TOKENS),
        ),
        Case(
            "restore version",
            "POST",
            "/adapters/{org}/priv/versions/{n}/restore",
            prepare=fresh_deleted_version,
            expect=expect(200, outsider=404, reader=403, **READ_ONLY_TOKENS),
        ),
        Case(
            "push that would publish",
            "POST",
            "/adapters/{org}/priv/versions",
            json={"files": "{files}", "base": "{base}", "public": True},
            prepare=lambda w, p: {**fresh_files(w, p), **common},
            expect=expect(409, outsider=403, reader=403, **READ_ONLY_TOKENS),
        ),
        # jobs: a write-scoped token and read access to every input (a reader's role is
        # enough: the job computes from what it may read)
        Case(
            "submit export job",
            "POST",
            "/jobs",
            json={"type": "export", "params": {"adapter": "{org}/priv@{n}"}},
            prepare=fresh_version,
            expect=expect(201, outsider=404, **READ_ONLY_TOKENS),
        ),
        Case(
            "cancel someone's job",
            "POST",
            "/jobs/{job}/cancel",
            prepare=fresh_job,
            expect=expect(403, outsider=404, site_admin=200, site_admin_write_token=200),
        ),
        # webhooks: namespace admins, and never to an internal address
        Case(
            "webhook to loopback",
            "POST",
            "/namespaces/{org}/webhooks",
            json={"url": "http://127.0.0.1:9/hook"},
            expect=expect(403, org_admin=400, site_admin=400),
        ),
    ]
    failures = run_matrix(world, cases)
    assert not failures, "\n".join(failures)
