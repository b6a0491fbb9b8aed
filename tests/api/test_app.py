"""The app as a whole: its OpenAPI document, and a property-based fuzz of every operation.

The fuzz loads the live server's ``/openapi.json`` when it runs, so it covers every route
present at that time (adapters, blobs, jobs... as they are added), positive and negative
inputs, with the admin token (deepest reach) and anonymously. It must find no 5xx and no
response that breaks the schema (status documented, body matches, content type right).
It is bounded: ``FUZZ_BUDGET`` examples in all, spread over the operations.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from loreg.api import routers
from loreg.api.app import API_ROUTERS
from tests.fixtures.api import RegistryServer

#: Examples per backend for the whole schema (at least ``MIN_PER_OPERATION`` each).
FUZZ_BUDGET = 1500
MIN_PER_OPERATION = 10
#: Stop generating new examples after this long (per backend), whatever is left.
TIME_BUDGET_S = 60.0

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def test_openapi_documents_the_error_shape(registry_server: RegistryServer) -> None:
    doc = registry_server.get("/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if status[0] in "45":
                    ref = response["content"]["application/json"]["schema"]
                    assert ref == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path)
    assert {"/healthz", "/readyz", "/api/v1/whoami", "/api/v1/orgs"} <= set(doc["paths"])


def test_every_router_module_is_mounted() -> None:
    """The app lists its routers; a resource module left out of the list fails here."""
    modules = [
        importlib.import_module(f"{routers.__name__}.{info.name}")
        for info in pkgutil.iter_modules(routers.__path__)
        if info.name != "health" and not info.name.startswith("_")
    ]
    assert len(modules) >= 10
    assert {id(m.router) for m in modules} == {id(r) for r in API_ROUTERS}
    assert len(API_ROUTERS) == len(modules)


def _fuzz_operation(
    operation: Any, base_url: str, auth: dict[str, str], examples: int, deadline: float
) -> int:
    """Run one operation's positive and negative examples; how many were sent."""
    sent = 0
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, anonymous=st.booleans())
    def fuzz(case: Any, anonymous: bool) -> None:
        nonlocal sent
        if time.monotonic() > deadline:
            return
        sent += 1
        case.call_and_validate(
            base_url=base_url, headers=None if anonymous else auth, checks=CHECKS, timeout=30
        )

    fuzz()
    return sent


@pytest.mark.slow
def test_fuzz_openapi(registry_server: RegistryServer) -> None:
    schema = schemathesis.openapi.from_url(registry_server.url("/openapi.json"))
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert operations
    per_operation = max(MIN_PER_OPERATION, FUZZ_BUDGET // len(operations))
    auth = {"Authorization": f"Bearer {registry_server.admin_token}"}
    deadline = time.monotonic() + TIME_BUDGET_S
    failures: list[str] = []
    sent = 0
    for operation in operations:
        try:
            sent += _fuzz_operation(
                operation, registry_server.base_url, auth, per_operation, deadline
            )
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert sent >= len(operations)
    # the registry is still healthy afterwards
    assert registry_server.get("/readyz").status_code == 200
