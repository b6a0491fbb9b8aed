"""The fast read path answers exactly as the framework's routes would, errors included, and
version documents revalidate with ETag / If-None-Match (never past an access check)."""

from __future__ import annotations

import httpx
import pytest

from loreg.api.fastpath import VERSION_CACHE_CONTROL
from tests.factories.registry import Registry, fill_registry
from tests.fixtures.api import RegistryServer

#: An unknown query parameter sends a request to the framework's route (which ignores it).
VIA_ROUTE = "zz_route=1"


@pytest.fixture
def registry(registry_server: RegistryServer) -> Registry:
    with registry_server.app.state.sessionmaker() as session:
        return fill_registry(session, extra_adapters=3)


def _both(client: httpx.Client, path: str) -> tuple[httpx.Response, httpx.Response]:
    fast = client.get(path)
    routed = client.get(path + ("&" if "?" in path else "?") + VIA_ROUTE)
    return fast, routed


def _paths(reg: Registry) -> list[str]:
    digest = reg.digests[f"{reg.public}@3"]
    return [
        f"/adapters/{reg.public}/versions/1",
        f"/adapters/{reg.public}/versions/{digest}",
        f"/adapters/{reg.public}/versions/2",
        f"/adapters/{reg.public}/versions/2?include_deleted=true",
        f"/adapters/{reg.public}/versions/2?include_deleted=no",
        f"/adapters/{reg.private}/versions/1",
        f"/adapters/{reg.public}/versions/0",
        f"/adapters/{reg.public}/versions/sha256:nothex",
        "/adapters/Bad%20Name/x/versions/1",
        f"/adapters/{reg.public}/versions",
        f"/adapters/{reg.public}/versions?limit=1",
        f"/adapters/{reg.public}/versions?include_deleted=1&limit=2",
        f"/adapters/{reg.private}/versions",
        f"/adapters/{reg.org}/nothing-here/versions",
        f"/resolve?ref={reg.public}",
        f"/resolve?ref={reg.public}:prod",
        f"/resolve?ref={reg.public}@{digest}",
        f"/resolve?ref={reg.private}@2",
        f"/resolve?ref={reg.public}:no-such-tag",
        "/resolve?ref=not-a-ref",
        "/adapters",
        "/adapters?limit=2",
        f"/adapters?namespace={reg.org}&label=stage=prod&rank_min=8&rank_max=64",
        "/adapters?text=Support&target=q_proj",
        "/adapters?label=stage=prod&label=stage=dev",
        "/adapters?namespace=",
        "/adapters?base=org/none",
        "/adapters?label=nokeyvalue",
    ]


def test_fast_answers_equal_the_routes(registry_server: RegistryServer, registry: Registry) -> None:
    for token in (registry.member_token, registry.outsider_token, None):
        client = registry_server.client(token)
        for path in _paths(registry):
            fast, routed = _both(client, path)
            assert (fast.status_code, fast.json()) == (routed.status_code, routed.json()), path
            assert fast.headers["content-type"] == routed.headers["content-type"]
            assert fast.status_code < 500
            document = fast.status_code == 200 and ("/versions/" in path or "/resolve" in path)
            # only the fast path marks version documents: proof that each path was taken
            assert ("etag" in fast.headers) == document and "etag" not in routed.headers
    # the next page's cursor works the same way on both
    client = registry_server.client(registry.member_token)
    first = client.get("/adapters?limit=2").json()
    fast, routed = _both(client, f"/adapters?limit=2&cursor={first['next_cursor']}")
    assert fast.json() == routed.json() and fast.json()["adapters"]


def test_bad_tokens_are_refused_alike(registry_server: RegistryServer, registry: Registry) -> None:
    path = f"/adapters/{registry.public}/versions/1"
    for header in ("Bearer lrg_nope", "Basic abc", "Bearer"):
        client = registry_server.client(None)
        client.headers["Authorization"] = header
        fast, routed = _both(client, path)
        assert fast.status_code == routed.status_code == 401
        assert fast.json() == routed.json()
        assert fast.headers.get("www-authenticate") == routed.headers.get("www-authenticate")


def test_version_documents_revalidate(registry_server: RegistryServer, registry: Registry) -> None:
    member = registry_server.client(registry.member_token)
    path = f"/adapters/{registry.public}/versions/1"
    r = member.get(path)
    etag = r.headers["etag"]
    assert r.headers["cache-control"] == VERSION_CACHE_CONTROL
    assert "authorization" in r.headers["vary"].lower()
    again = member.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert member.get(path, headers={"If-None-Match": '"other", ' + etag}).status_code == 304
    assert member.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    # the document changes when a tag moves onto the version: so does its ETag
    admin = registry_server.admin
    assert admin.put(
        f"/adapters/{registry.public}/tags/candidate", json={"version": 1}
    ).status_code in (200, 201)
    moved = member.get(path, headers={"If-None-Match": etag})
    assert moved.status_code == 200 and moved.headers["etag"] != etag
    assert "candidate" in moved.json()["tags"]


def test_a_matching_etag_reveals_nothing_without_access(
    registry_server: RegistryServer, registry: Registry
) -> None:
    path = f"/adapters/{registry.private}/versions/1"
    etag = registry_server.client(registry.member_token).get(path).headers["etag"]
    for token in (registry.outsider_token, None):
        r = registry_server.client(token).get(path, headers={"If-None-Match": etag})
        assert r.status_code == 404
        r = registry_server.client(token).get(path, headers={"If-None-Match": "*"})
        assert r.status_code == 404
    assert "etag" not in r.headers


def test_metrics_count_fast_answers_by_route(
    registry_server: RegistryServer, registry: Registry
) -> None:
    client = registry_server.client(registry.member_token)
    for _ in range(3):
        assert client.get(f"/resolve?ref={registry.public}:prod").status_code == 200
    text = registry_server.get("/metrics").text
    line = [
        x
        for x in text.splitlines()
        if x.startswith("loreg_http_requests_total")
        and 'route="/api/v1/resolve"' in x
        and 'status="200"' in x
    ]
    assert line and float(line[0].rsplit(" ", 1)[1]) >= 3
