"""The HTTP layer: auth header, typed errors, retries with backoff, safe redirects.

Retries: connection errors and 5xx answers are retried with exponential backoff (plus jitter)
for requests that are safe to repeat. Redirects are followed by hand: a ``307`` to another
host (a presigned S3 URL) is fetched with a client that carries no ``Authorization`` header,
so the registry token never leaves for the store.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx

from loreg.client.errors import ApiError, ConnectionFailed, Offline, ServerError

T = TypeVar("T")

API_PREFIX = "/api/v1"
REDIRECTS = {301, 302, 303, 307, 308}
USER_AGENT = "loreg-client/0.1"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


class Http:
    """One registry endpoint: a pooled authenticated client plus a bare one for redirects."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.25,
        max_connections: int = 16,
        offline: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.offline = offline
        self.token = token
        self.retries = retries
        self.backoff = backoff
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        tmo = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        headers = {"User-Agent": USER_AGENT}
        auth_headers = dict(headers)
        if token:
            auth_headers["Authorization"] = f"Bearer {token}"
        self.api = httpx.Client(
            base_url=self.url + API_PREFIX,
            headers=auth_headers,
            timeout=tmo,
            limits=limits,
            follow_redirects=False,
        )
        self._bare_args: dict[str, Any] = dict(
            headers=headers, timeout=tmo, limits=limits, follow_redirects=False
        )
        self._bare: httpx.Client | None = None
        self._lock = threading.Lock()
        #: Rewrites a final error into one that says what to do (``loreg.client.advice``).
        self.explain: Callable[[ApiError], ApiError] | None = None

    @property
    def bare(self) -> httpx.Client:
        """For presigned URLs on other hosts: never carries the registry token.

        Built on first use: a TLS context costs ~0.1 s, which a re-push should not pay.
        """
        with self._lock:
            if self._bare is None:
                self._bare = httpx.Client(**self._bare_args)
            return self._bare

    def close(self) -> None:
        self.api.close()
        if self._bare is not None:
            self._bare.close()

    # --- retries -------------------------------------------------------------------------

    def sleep_before(self, attempt: int) -> None:
        delay = self.backoff * (2**attempt)
        time.sleep(min(delay, 10.0) * (0.75 + random.random() / 2))

    def retrying(self, fn: Callable[[], T], *, idempotent: bool = True) -> T:
        """Run ``fn``; retry connection failures and 5xx (non-idempotent: connect errors only).

        A refused connection to this machine's loopback is not retried: nothing listens
        there, and waiting seconds to say so helps nobody.
        """
        try:
            return self._retrying(fn, idempotent=idempotent)
        except ApiError as exc:
            better = self.explain(exc) if self.explain is not None else exc
            if better is exc:
                raise
            raise better from exc.__cause__

    def _retrying(self, fn: Callable[[], T], *, idempotent: bool) -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except (httpx.TransportError, ServerError, ConnectionFailed) as exc:
                cause = exc.__cause__ if isinstance(exc, ConnectionFailed) else exc
                refused = isinstance(cause, httpx.ConnectError)
                retryable = idempotent or refused
                if refused and self.api.base_url.host in LOOPBACK:
                    retryable = False
                if not retryable or attempt >= self.retries:
                    if isinstance(exc, ApiError):
                        raise
                    raise self._wrap(exc) from exc
                self.sleep_before(attempt)
                attempt += 1

    def _wrap(self, exc: Exception) -> ApiError:
        if isinstance(exc, ApiError):
            return exc
        return ConnectionFailed(
            f"cannot reach the registry at {self.url}: {type(exc).__name__}: {exc}".rstrip(": "),
            details={"url": self.url},
        )

    def refuse_offline(self) -> None:
        """With ``LOREG_OFFLINE`` set nothing goes over the network."""
        if self.offline:
            raise Offline(
                f"LOREG_OFFLINE is set, and this needs the registry at {self.url}: unset "
                "LOREG_OFFLINE (offline, `loreg pull` serves versions pulled before)",
                details={"url": self.url},
            )

    # --- plain requests ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        content: Callable[[], Iterable[bytes] | bytes] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """One API call (``path`` under /api/v1); 2xx/3xx returned, errors raised typed."""
        self.refuse_offline()
        if idempotent is None:
            idempotent = method.upper() in {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}
        clean = {k: v for k, v in (params or {}).items() if v is not None}

        def once() -> httpx.Response:
            body = content() if content is not None else None
            resp = self.api.request(
                method, path, json=json, params=clean, headers=headers, content=body
            )
            if resp.status_code >= 400:
                raise ApiError.from_response(resp)
            return resp

        return self.retrying(once, idempotent=idempotent)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.request(method, path, **kwargs)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    # --- streamed downloads with redirects --------------------------------------------------

    @contextmanager
    def stream_get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """GET ``path`` (under /api/v1) streamed, following redirects; no retries here.

        The token is sent only to the registry's own origin; a redirect elsewhere goes
        through the bare client.
        """
        self.refuse_offline()
        own = _origin(self.api.base_url)
        client = self.api
        url: str | httpx.URL = path
        for _ in range(6):
            req = client.build_request("GET", url, headers=headers)
            resp = client.send(req, stream=True)
            if resp.status_code in REDIRECTS and "location" in resp.headers:
                location = urljoin(str(resp.request.url), resp.headers["location"])
                resp.close()
                target = httpx.URL(location)
                client = self.api if _origin(target) == own else self.bare
                url = target
                continue
            try:
                if resp.status_code >= 400:
                    resp.read()
                    raise ApiError.from_response(resp)
                yield resp
            finally:
                resp.close()
            return
        raise ConnectionFailed(f"too many redirects fetching {path}")
