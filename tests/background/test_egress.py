"""Requests pinned to the address the egress guard checked."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from loreg.background import egress
from tests.fixtures.webhooks import LOOPBACK, run_receiver


def test_a_post_resolves_once_and_connects_to_that_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No second lookup a rebinding DNS server could answer differently: the name is
    resolved by the check only, and the request goes to the checked address with the
    original Host header."""
    lookups: list[Any] = []
    real = socket.getaddrinfo

    def counting(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return real(host, *args, **kwargs)

    with run_receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        monkeypatch.setattr(socket, "getaddrinfo", counting)
        with egress.client() as http:
            r = egress.post(
                http,
                f"http://localhost:{port}/hook",
                content=b"{}",
                headers={"Content-Type": "application/json"},
                timeout=10,
                policy=LOOPBACK,
            )
        monkeypatch.undo()
    assert r.status_code == 200
    assert [h for h in lookups if h == "localhost"] == ["localhost"]
    assert [h for h in lookups if h != "localhost"] in ([], ["127.0.0.1"])
    [(headers, _body)] = receiver.requests
    assert headers["host"] == f"localhost:{port}"
