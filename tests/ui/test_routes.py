"""The UI's router over HTTP on both backends: unknown or malformed ids answer the friendly
404 page (never a 500), whichever page they were meant for."""

from __future__ import annotations

import httpx
import pytest

from tests.factories.ui_world import World, page_html
from tests.fixtures.api import RegistryServer


@pytest.mark.parametrize(
    "path",
    [
        "/ui/adapters/nobody/nothing",
        "/ui/adapters/UPPER/case",
        "/ui/adapters/a%20b/c",
        "/ui/adapters/" + "x" * 300 + "/y",
        "/ui/adapters/%00/x",
        "/ui/adapters/ns/name/versions/1",
        "/ui/adapters/ns/name/versions/0",
        "/ui/adapters/ns/name/versions/abc",
        "/ui/adapters/ns/name/versions/99999999999999999999",
        "/ui/adapters/ns/name/versions/-1",
        "/ui/adapters/ns/name/versions/%E2%91%A0",
        "/ui/bases/nobody/nothing",
        "/ui/bases/a/b/c",
        "/ui/bases/%2E%2E",
        "/ui/bases/%00",
        "/ui/no/such/page",
        "/ui/static/../routes.py",
    ],
)
def test_unknown_and_malformed_ids_are_friendly_404s(
    registry_server: RegistryServer, path: str
) -> None:
    with httpx.Client(base_url=registry_server.base_url, timeout=30) as ui:
        r = ui.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text[:300])
        if "/static/" not in path:
            assert "Not found" in page_html(r, 404)


def test_unknown_versions_and_jobs_of_real_things(world: World) -> None:
    ui = world.ui(world.owner)
    for path in (
        f"/ui/adapters/{world.alpha}/versions/3",
        f"/ui/adapters/{world.alpha}/versions/00",
        "/ui/jobs/" + "0" * 32,
        "/ui/jobs/nope",
        "/ui/jobs/" + "z" * 200,
        "/ui/jobs/%00",
        "/ui/jobs/x/outputs/y",
        "/ui/jobs/" + "0" * 32 + "/cancel",
    ):
        r = ui.get(path)
        assert r.status_code == 404, (path, r.status_code)
        page_html(r, 404)
    r = ui.get("/ui/jobs/" + "0" * 32 + "/progress.json")
    assert r.status_code == 404 and r.json() == {"error": "not found"}
