"""Requests to URLs users chose (webhook receivers), pinned to the address that was checked.

``loreg.services.egress`` decides which addresses are refused; this module sends: it
resolves the host once, checks every address, connects to the one it checked (the URL's
host replaced by the address, with the original ``Host`` header and TLS server name, so
certificates are still verified against the name), follows no redirect and uses no proxy
from the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from loreg.services.egress import EgressPolicy, host_port, resolve


def client() -> httpx.Client:
    """An HTTP client for :func:`post`: no proxies from the environment, no redirects."""
    return httpx.Client(trust_env=False, follow_redirects=False)


def post(
    http: httpx.Client,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    timeout: float,
    policy: EgressPolicy,
) -> httpx.Response:
    """POST to ``url``, connecting only to an address :func:`resolve` checked just now.

    Raises ``DestinationRefused``/``DestinationUnresolved`` before any connection, and
    httpx errors as usual. Never follows a redirect.
    """
    host, port = host_port(url)
    address = resolve(host, port, policy)[0]
    original = httpx.URL(url)
    pinned = original.copy_with(host=str(address))
    extensions: dict[str, Any] = {}
    if original.scheme == "https":
        extensions["sni_hostname"] = original.raw_host.decode("ascii")
    sent = {**headers, "Host": original.netloc.decode("ascii")}
    return http.post(
        pinned,
        content=content,
        headers=sent,
        timeout=timeout,
        follow_redirects=False,
        extensions=extensions,
    )
