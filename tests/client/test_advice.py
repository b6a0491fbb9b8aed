"""Errors about the registry's address and the token name their source and the fix, and a
refused connection to this machine fails at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from loreg.client import Client, ConnectionFailed, Unauthenticated
from loreg.client.advice import FROM_DEFAULT, FROM_ENV, FROM_STORED, Origin
from loreg.client.errors import NotFound
from loreg.config import Settings
from tests.cli.harness import free_port


def test_a_refused_connection_to_loopback_is_not_retried(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, None, home=tmp_path, retries=4, backoff=0.25) as c:
        started = time.monotonic()
        with pytest.raises(ConnectionFailed) as info:
            c.whoami()
        elapsed = time.monotonic() - started
    # four retries would sleep at least 0.75 * (0.25 + 0.5 + 1 + 2) = 2.8 s
    assert elapsed < 1.0, elapsed
    assert "connection refused" in info.value.message and url in info.value.message
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_other_hosts_are_still_retried(tmp_path: Path) -> None:
    with Client("http://registry.example:8080", None, home=tmp_path, retries=3) as c:
        c.http.sleep_before = lambda attempt: None  # type: ignore[method-assign]
        calls = []

        def refuse() -> None:
            calls.append(1)
            raise httpx.ConnectError("[Errno 111] Connection refused")

        with pytest.raises(ConnectionFailed):
            c.http.retrying(refuse)
    assert len(calls) == 4  # the first try and three retries


def _settings(home: Path, **env: str) -> Settings:
    return Settings(home=home, **env)  # type: ignore[arg-type]


def test_from_settings_records_where_url_and_token_came_from(tmp_path: Path) -> None:
    c = Client.from_settings(_settings(tmp_path))
    assert (c.origin.url_from, c.origin.token_from) == (FROM_DEFAULT, None)
    c = Client.from_settings(_settings(tmp_path, url="http://10.0.0.1:1", token="lrg_x"))
    assert (c.origin.url_from, c.origin.token_from) == (FROM_ENV, FROM_ENV)
    (tmp_path / "credentials.json").write_text(
        json.dumps({"url": "http://127.0.0.1:9", "token": "lrg_stored"})
    )
    c = Client.from_settings(_settings(tmp_path))
    assert (c.origin.url_from, c.origin.token_from, c.token) == (
        FROM_STORED,
        FROM_STORED,
        "lrg_stored",
    )


def test_explain_leaves_other_errors_alone(tmp_path: Path) -> None:
    origin = Origin(tmp_path)
    err = NotFound("adapter 'a/b' not found")
    assert origin.explain(err, "http://x") is err
    plain = ConnectionFailed("too many redirects fetching /blobs/x")  # not a transport error
    assert origin.explain(plain, "http://x") is plain


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        (dict(token_from=None), ["not logged in", "LOREG_TOKEN is unset", "`loreg serve`"]),
        (dict(token_from=FROM_ENV), ["the token in LOREG_TOKEN", "(token has expired)"]),
        (dict(token_from=FROM_STORED), ["the token stored in", "`loreg login http://r`"]),
        (dict(token_from=None, stored_url="http://other"), ["is for http://other"]),
    ],
)
def test_unauthenticated_messages(tmp_path: Path, origin: dict, expected: list[str]) -> None:
    err = Unauthenticated("token has expired", code="unauthenticated")
    out = Origin(tmp_path, **origin).explain(err, "http://r")
    assert isinstance(out, Unauthenticated) and out.code == "unauthenticated"
    assert "\n" not in out.message
    assert Origin(tmp_path, **origin).explain(out, "http://r") is out  # once is enough
    for text in expected:
        assert text in out.message, (text, out.message)
