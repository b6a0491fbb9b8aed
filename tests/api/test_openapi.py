"""The API's documentation as a CI author meets it: operation ids, descriptions, tags,
examples that match the schemas, only the errors an operation can answer, and ``/docs``
served from loreg's own files (nothing fetched from elsewhere)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from pydantic import BaseModel

from loreg.api import examples as ex
from loreg.api.schemas.blobs import UploadCheck, UploadCheckResult
from loreg.api.schemas.common import ErrorResponse
from loreg.api.schemas.jobs import JobCreate, JobOut
from loreg.api.schemas.versions import AdapterList, PushRequest, PushResponse
from tests.fixtures.api import RegistryServer

METHODS = ("get", "put", "post", "delete", "patch", "head")


@pytest.fixture(params=["sqlite+local"])
def registry_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def doc(registry_server: RegistryServer) -> dict[str, Any]:
    return dict(registry_server.get("/openapi.json").json())


def operations(doc: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (method, path, operation)."""
    out = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["operationId"] not in out, f"duplicate id {op['operationId']}"
            out[op["operationId"]] = (method, path, op)
    return out


def test_operation_ids_descriptions_and_tags(doc: dict[str, Any]) -> None:
    ops = operations(doc)
    assert len(ops) >= 45
    for op_id, (method, path, op) in ops.items():
        # an SDK method name: snake_case words, no path, no HTTP method
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", op_id), op_id
        assert "api_v1" not in op_id and not op_id.endswith(tuple(f"_{m}" for m in METHODS))
        segments = [s for s in re.split(r"[/{}_]+", path) if s]
        assert not ("_".join(segments) in op_id and len(segments) > 1), (op_id, path)
        assert len(op.get("description", "")) >= 30, f"{method} {path}: no description"
        assert op.get("summary"), f"{method} {path}: no summary"
        assert op.get("tags"), f"{method} {path}: no tag"
    assert {
        "push_version",
        "submit_job",
        "search_adapters",
        "check_uploads",
        "put_blob",
        "get_job",
        "job_outputs",
        "restore_version",
        "list_users",
        "list_orgs",
    } <= set(ops)
    described = {t["name"]: t["description"] for t in doc["tags"]}
    used = {tag for _, _, op in ops.values() for tag in op["tags"]}
    assert used <= set(described) and all(len(d) > 20 for d in described.values())
    assert "Bearer" in doc["info"]["description"]


def _examples(content: dict[str, Any]) -> list[Any]:
    media = content["application/json"]
    return [e["value"] for e in media.get("examples", {}).values()] + (
        [media["example"]] if "example" in media else []
    )


@pytest.mark.parametrize(
    ("op_id", "request_model", "status", "response_model"),
    [
        ("push_version", PushRequest, "201", PushResponse),
        ("submit_job", JobCreate, "201", JobOut),
        ("check_uploads", UploadCheck, "200", UploadCheckResult),
        ("search_adapters", None, "200", AdapterList),
    ],
)
def test_examples_exist_and_match_the_schemas(
    doc: dict[str, Any],
    op_id: str,
    request_model: type[BaseModel] | None,
    status: str,
    response_model: type[BaseModel],
) -> None:
    _, _, op = operations(doc)[op_id]
    if request_model is not None:
        bodies = _examples(op["requestBody"]["content"])
        assert bodies, f"{op_id}: no request example"
        for body in bodies:
            request_model.model_validate(body)
    answers = _examples(op["responses"][status]["content"])
    assert answers, f"{op_id}: no response example"
    for answer in answers:
        response_model.model_validate(answer)


def test_job_examples_cover_merge_and_combine(doc: dict[str, Any]) -> None:
    _, _, op = operations(doc)["submit_job"]
    kinds = {b["type"] for b in _examples(op["requestBody"]["content"])}
    assert {"merge", "combine", "validate"} <= kinds
    _, _, push = operations(doc)["push_version"]
    (incompatible,) = _examples(push["responses"]["422"]["content"])
    ErrorResponse.model_validate(incompatible)
    assert ex.INCOMPATIBLE_RESPONSE["error"]["code"] == "incompatible"


def test_only_the_errors_an_operation_can_answer(doc: dict[str, Any]) -> None:
    ops = operations(doc)

    def errors(op_id: str) -> set[int]:
        return {int(s) for s in ops[op_id][2]["responses"] if s[0] in "45"}

    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert errors("healthz") == set()
    assert errors("readyz") == {503}
    assert errors("whoami") == {401, 503}  # no input to be wrong, nothing to find
    assert errors("search_adapters") == {400, 401, 503}  # a filter: never 403/404/409
    assert errors("show_adapter") == {400, 401, 404, 503}
    assert errors("push_version") == {400, 401, 403, 404, 409, 413, 422, 503}
    assert errors("put_blob") == {400, 401, 403, 413, 503}
    assert errors("get_blob") == {400, 401, 404, 416, 503}
    assert errors("submit_job") == {400, 401, 403, 404, 409, 503}
    # 422 (incompatible) only where an adapter meets a base; 413 only where bytes arrive
    assert {o for o in ops if 422 in errors(o)} == {"push_version"}
    assert {o for o in ops if 413 in errors(o)} == {"push_version", "put_blob"}
    # reads of public things need no role: no 403
    for op_id in ("list_bases", "show_base", "resolve", "list_versions", "list_tags"):
        assert 403 not in errors(op_id), op_id


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def test_docs_are_served_by_loreg_itself(registry_server: RegistryServer) -> None:
    page = registry_server.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    parser = _Refs()
    parser.feed(html)
    # every asset of the page, and the document it loads, is one of loreg's own URLs
    urls = parser.urls + re.findall(r"url: '([^']+)'", html)
    assert len(urls) >= 3, html
    assert not re.search(r"https?://", html), "the page names another host"
    content_types = {
        ".js": "javascript",
        ".css": "text/css",
        ".png": "image/png",
        ".json": "application/json",
    }
    for url in urls:
        assert url.startswith("/"), url
        r = registry_server.get(url)
        assert r.status_code == 200, url
        kind = next(v for k, v in content_types.items() if url.endswith(k))
        assert kind in r.headers["content-type"], (url, r.headers["content-type"])
    bundle = registry_server.get("/docs/assets/swagger-ui-bundle.js")
    assert len(bundle.content) > 500_000  # the real Swagger UI, not a stub
    # the bundle's version reads OpenAPI 3.1 (Swagger UI 5+)
    assert registry_server.get("/openapi.json").json()["openapi"].startswith("3.1")
    assert registry_server.get("/redoc").status_code == 404  # no CDN-only page left


def test_root_redirects_to_the_web_page(registry_server: RegistryServer) -> None:
    r = registry_server.get("/")
    assert r.status_code in (302, 307) and r.headers["location"] == "/ui/"
