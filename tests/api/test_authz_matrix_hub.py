"""The authorisation matrix, continued for the Hugging Face Hub protocol routes.

Same principals, world and runner as ``test_authz_matrix``. The Hub answers a repo the caller
may not read exactly like a missing one: 401 without a (valid) token, 404 with one, never
403. Paths are absolute URLs (the Hub routes live at the root, not under ``/api/v1``).
Commits carry their files inline (NDJSON), so every principal commits bytes it holds.
"""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from tests.factories.authz_matrix import PRINCIPALS, Case, build_world, expect, run_matrix
from tests.factories.hub import publishable
from tests.factories.pushes import Models, build_models, push, register_base
from tests.fixtures.api import RegistryServer, unique_name

READERS = {p: 200 for p in PRINCIPALS if p not in ("anonymous", "bad_token", "outsider")}
READ_ONLY_TOKENS = {"org_admin_read_token": 403, "site_admin_read_token": 403}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return build_models(tmp_path_factory.mktemp("models"))


def _ndjson(folder: Path) -> bytes:
    lines: list[dict[str, Any]] = [{"key": "header", "value": {"summary": "authz"}}]
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            lines.append(
                {
                    "key": "file",
                    "value": {
                        "path": p.relative_to(folder).as_posix(),
                        "encoding": "base64",
                        "content": base64.b64encode(p.read_bytes()).decode(),
                    },
                }
            )
    return b"\n".join(json.dumps(x).encode() for x in lines)


def test_hub_authorisation_matrix(
    registry_server: RegistryServer, models: Models, tmp_path: Path
) -> None:
    world = build_world(registry_server)
    admin, org = world.admin, world.org
    base = f"authz/{unique_name('B')}"
    assert register_base(admin, models.base, base).status_code == 201
    priv = publishable(models.adapter.path, tmp_path / "priv", base)
    assert push(admin, priv, f"{org}/priv").status_code == 201
    pub = publishable(models.adapter_r8.path, tmp_path / "pub", base)
    assert push(admin, pub, f"{org}/pub", public=True).status_code == 201
    weights = next(
        f
        for f in admin.get(f"/adapters/{org}/priv/versions/1").json()["files"]
        if f["path"] == "adapter_model.safetensors"
    )
    file_ok = 302 if registry_server.backend == "postgres+s3" else 200
    root = registry_server.base_url
    seeds = itertools.count(2000)

    private_read = expect(404, **READERS)
    write = expect(200, outsider=404, reader=403, **READ_ONLY_TOKENS)
    cases = [
        Case("hub model info (private)", "GET", root + "/api/models/{org}/priv", private_read),
        Case(
            "hub revision info (private)",
            "GET",
            root + "/api/models/{org}/priv/revision/1",
            private_read,
        ),
        Case("hub tree (private)", "GET", root + "/api/models/{org}/priv/tree/main", private_read),
        Case(
            "hub paths-info (private)",
            "POST",
            root + "/api/models/{org}/priv/paths-info/main",
            private_read,
            json={"paths": ["adapter_config.json"]},
        ),
        Case("hub refs (private)", "GET", root + "/api/models/{org}/priv/refs", private_read),
        Case(
            "hub commits (private)",
            "GET",
            root + "/api/models/{org}/priv/commits/main",
            private_read,
        ),
        Case(
            "hub resolve (private)",
            "GET",
            root + "/{org}/priv/resolve/main/adapter_config.json",
            expect(404, **{p: file_ok for p in READERS}),
        ),
        Case(
            "hub resolve (missing repo)",
            "GET",
            root + "/{org}/no-such-repo/resolve/main/adapter_config.json",
            expect(404),
        ),
        Case(
            "hub model info (public)",
            "GET",
            root + "/api/models/{org}/pub",
            expect(200, anonymous=200),
        ),
        Case(
            "hub resolve (public)",
            "GET",
            root + "/{org}/pub/resolve/main/adapter_config.json",
            expect(file_ok, anonymous=file_ok),
        ),
        Case("hub whoami", "GET", root + "/api/whoami-v2", expect(200)),
        Case(
            "hub validate yaml",
            "POST",
            root + "/api/validate-yaml",
            expect(200, anonymous=200, bad_token=200),
            json={"content": "# card"},
        ),
        Case(
            "hub create repo in org",
            "POST",
            root + "/api/repos/create",
            json={"name": "{new}", "organization": "{org}"},
            prepare=lambda w, p: {"new": unique_name("hr")},
            expect=expect(200, outsider=403, reader=403, **READ_ONLY_TOKENS),
        ),
        Case(
            "hub preupload (private)",
            "POST",
            root + "/api/models/{org}/priv/preupload/main",
            write,
            json={"files": [{"path": "a.bin", "size": 3}]},
        ),
        Case(
            "hub lfs batch (private)",
            "POST",
            root + "/{org}/priv.git/info/lfs/objects/batch",
            write,
            json={
                "operation": "upload",
                "transfers": ["basic"],
                "objects": [{"oid": "ab" * 32, "size": 3}],
            },
        ),
        Case(
            "hub lfs verify (private)",
            "POST",
            root + "/{org}/priv.git/info/lfs/objects/verify",
            write,
            json={"oid": weights["digest"][7:], "size": weights["size"]},
        ),
        # answered alike for everyone: loreg has no Xet and no datasets; an upload URL is a
        # capability (its signature), whatever the caller sends
        Case(
            "hub xet token",
            "GET",
            root + "/api/models/{org}/priv/xet-write-token/main",
            expect(400, anonymous=400, bad_token=400),
        ),
        Case(
            "hub datasets",
            "GET",
            root + "/api/datasets/{org}/priv",
            expect(404, anonymous=404, bad_token=404),
        ),
        Case(
            "hub lfs upload, forged URL",
            "PUT",
            root + "/api/lfs/objects/" + "ab" * 32 + "?size=3&tid=1&exp=9999999999&sig=" + "0" * 64,
            expect(401, anonymous=401),
        ),
        Case(
            "hub lfs part, forged URL",
            "PUT",
            root + "/api/lfs/objects/" + "ab" * 32 + "/parts/1?size=3&tid=1&exp=9999999999"
            "&chunk=5242880&sig=" + "0" * 64,
            expect(401, anonymous=401),
        ),
        Case(
            "hub lfs completion, forged URL",
            "POST",
            root + "/api/lfs/objects/" + "ab" * 32 + "?size=3&tid=1&exp=9999999999"
            "&chunk=5242880&sig=" + "0" * 64,
            expect(401, anonymous=401),
            json={"oid": "ab" * 32, "parts": [{"partNumber": 1, "etag": "x"}]},
        ),
    ]
    failures = run_matrix(world, cases)

    # commits: NDJSON bodies, fresh content per principal
    def commit(principal: str, repo: str) -> int:
        folder = publishable(
            models.variant(tmp_path, next(seeds)).path, tmp_path / unique_name("c"), base
        )
        r = world.client(principal).post(
            f"{root}/api/models/{repo}/commit/main", content=_ndjson(folder)
        )
        if r.status_code >= 400:
            assert set(r.json()) == {"error"}, r.text
        return r.status_code

    wanted_existing = expect(200, outsider=404, reader=403, **READ_ONLY_TOKENS)
    wanted_new = expect(200, outsider=403, reader=403, **READ_ONLY_TOKENS)
    for principal in PRINCIPALS:
        got = commit(principal, f"{org}/priv")
        if got != wanted_existing[principal]:
            failures.append(f"hub commit (private) as {principal}: {got}")
        got = commit(principal, f"{org}/{unique_name('nc')}")
        if got != wanted_new[principal]:
            failures.append(f"hub commit (new repo) as {principal}: {got}")
    assert not failures, "\n".join(failures)
