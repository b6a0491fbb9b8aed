"""The loreg Python client: everything the CLI does, importable.

    from loreg.client import Client
    client = Client("http://127.0.0.1:8080", token="lrg_...")
    pushed = client.push("./my-adapter", "acme/support-bot:prod", base="meta-llama/Llama-3.1-8B")
    pushed.version.number, pushed.version.digest
    client.pull("acme/support-bot:prod", "./support-bot")

Results are typed (``loreg.client.models``: ``Version``, ``Adapter``, ``Job`` ...); each
one's ``to_dict()`` is the API's document as sent. Errors are the typed exceptions of
``loreg.client.errors`` (``NotFound``, ``Incompatible`` ...), each carrying the API's
``code``, ``message``, ``details`` and ``status``. Nothing here imports the server's code:
``pip install loreg`` (no extras) is enough.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loreg.client import jobs as _jobs
from loreg.client._http import Http
from loreg.client.advice import FROM_ARGUMENT, FROM_DEFAULT, FROM_ENV, FROM_STORED, Origin
from loreg.client.cache import BlobCache
from loreg.client.credentials import load_credentials, save_credentials
from loreg.client.errors import (
    ApiError,
    Conflict,
    ConnectionFailed,
    Incompatible,
    IntegrityError,
    InvalidInput,
    JobFailed,
    NotCached,
    NotFound,
    Offline,
    PermissionDenied,
    ServerError,
    TooLarge,
    Unauthenticated,
)
from loreg.client.jobs import JobCallback
from loreg.client.models import (
    Adapter,
    AuditEvent,
    Base,
    Delivery,
    Job,
    JobOutputs,
    Member,
    NewToken,
    NewUser,
    NewWebhook,
    Org,
    Tag,
    Token,
    User,
    Version,
    Webhook,
    WhoAmI,
)
from loreg.client.offline import VersionIndex, ref_forms
from loreg.client.transfer import (
    DEFAULT_WORKERS,
    ProgressFactory,
    PullResult,
    PushResult,
    hash_files,
    list_folder,
    materialize,
    upload_missing,
)
from loreg.errors import LoregError
from loreg.refs import FileEntry, parse_ref

if TYPE_CHECKING:
    from loreg.config import Settings

DEFAULT_URL = "http://127.0.0.1:8080"


def split_ref(ref: str) -> tuple[str, str, str, str]:
    """``ns/name[:tag|@N|@sha256:..]`` -> (namespace, name, kind, value); checked locally,
    with the registry's own grammar (``loreg.refs``)."""
    try:
        parsed = parse_ref(ref)
    except LoregError as exc:  # loreg.errors.InvalidInput -> the client's own class
        raise InvalidInput(str(exc), code="invalid_reference", details={"ref": ref}) from None
    return parsed.namespace, parsed.name, parsed.kind, parsed.value


def split_target(target: str) -> tuple[str, str, str | None]:
    """A push/combine target ``ns/name[:tag]`` -> (namespace, name, tag or None)."""
    ns, name, kind, value = split_ref(target)
    if kind != "tag":
        raise InvalidInput(
            f"{target!r}: a push target takes a tag (ns/name:tag), not a version",
            code="invalid_reference",
        )
    return ns, name, (value if ":" in target else None)


class Client:
    """A registry endpoint plus a local blob cache (under ``home``, default
    ``~/.local/share/loreg``, like ``LOREG_HOME``). Use it as a context manager, or
    ``close()`` it."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        home: str | Path | None = None,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.25,
        workers: int = DEFAULT_WORKERS,
        origin: Origin | None = None,
        offline: bool = False,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.offline = offline
        self.http = Http(
            self.url, token, timeout=timeout, retries=retries, backoff=backoff, offline=offline
        )
        home = Path(home) if home is not None else Path.home() / ".local" / "share" / "loreg"
        self.home = home
        self.origin = origin or Origin(
            home, url_from=FROM_ARGUMENT, token_from=FROM_ARGUMENT if token else None
        )
        self.http.explain = lambda exc: self.origin.explain(exc, self.url)
        self.cache = BlobCache.under_home(home)
        self.versions = VersionIndex(self.cache.root)
        self.workers = workers

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Client:
        """URL and token: ``LOREG_URL``/``LOREG_TOKEN`` first, then the stored login.

        The stored token is only sent to the URL it was stored for.
        """
        stored = load_credentials(settings.home)
        explicit_url = "url" in settings.model_fields_set
        url = settings.url if explicit_url else (stored.url or settings.url)
        url_from = FROM_ENV if explicit_url else (FROM_STORED if stored.url else FROM_DEFAULT)
        token = settings.token
        token_from = FROM_ENV if token is not None else None
        same_host = _same_registry(stored.url or DEFAULT_URL, url)
        if token is None and stored.token and same_host:
            token, token_from = stored.token, FROM_STORED
        origin = Origin(
            settings.home,
            url_from=url_from,
            token_from=token_from,
            stored_url=stored.url if stored.token else None,
        )
        kwargs.setdefault("offline", settings.offline)
        return cls(url, token, home=settings.home, origin=origin, **kwargs)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- accounts ------------------------------------------------------------------------

    def login(self) -> WhoAmI:
        """Check the token against the registry and store it for later commands."""
        me = self.whoami()
        save_credentials(self.home, self.url, self.token)
        return me

    def whoami(self) -> WhoAmI:
        """Who the token belongs to: user, scope, organisations."""
        return WhoAmI.from_api(self.http.json("GET", "/whoami"))

    def create_user(self, name: str, *, admin: bool = False, email: str | None = None) -> NewUser:
        """Create a user (and its namespace); the answer carries its first token, once."""
        body: dict[str, Any] = {"name": name, "admin": admin}
        if email:
            body["email"] = email
        return NewUser.from_api(self._post("/users", body))

    def create_org(self, name: str, *, description: str = "") -> Org:
        """Create an organisation; the caller becomes its admin."""
        return Org.from_api(self._post("/orgs", {"name": name, "description": description}))

    def add_member(self, org: str, user: str, role: str) -> Member:
        """Add ``user`` to ``org`` with ``role`` (or change their role)."""
        return Member.from_api(
            self._post(
                f"/orgs/{_segment(org)}/members", {"user": user, "role": role}, idempotent=True
            )
        )

    def list_users(self, *, limit: int | None = None) -> list[User]:
        """Every account (site administrators)."""
        return User.many(_jobs.paginate(self.http, "/users", {}, key="users", limit=limit))

    def list_orgs(self, *, mine: bool = False, limit: int | None = None) -> list[Org]:
        """Organisations with the caller's role in each (``mine``: only the caller's)."""
        params = {"mine": "true" if mine else None}
        return Org.many(_jobs.paginate(self.http, "/orgs", params, key="orgs", limit=limit))

    def get_org(self, name: str) -> Org:
        """An organisation; ``members`` is filled for its members and site administrators."""
        return Org.from_api(self.http.json("GET", f"/orgs/{_segment(name)}"))

    def remove_member(self, org: str, user: str) -> None:
        """Remove ``user`` from ``org``."""
        self.http.json("DELETE", f"/orgs/{_segment(org)}/members/{_segment(user)}")

    def create_token(
        self, name: str, *, scope: str = "write", expires_in_days: int | None = None
    ) -> NewToken:
        """A new token for the caller; its value (``.token``) is in this answer only."""
        body: dict[str, Any] = {"name": name, "scope": scope}
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        return NewToken.from_api(self._post("/tokens", body))

    def list_tokens(self) -> list[Token]:
        """The caller's tokens (never their values)."""
        return Token.many(_jobs.paginate(self.http, "/tokens", {}, key="tokens"))

    def revoke_token(self, token_id: int | str) -> None:
        """Revoke one of the caller's tokens by id."""
        self.http.json("DELETE", f"/tokens/{_segment(str(token_id))}")

    # --- base models ---------------------------------------------------------------------

    def register_base(
        self,
        folder: str | Path,
        name: str,
        *,
        upload: bool = True,
        progress: ProgressFactory | None = None,
        description: str | None = None,
    ) -> Base:
        """Compute the base's manifest and fingerprint locally, upload its files, register it.

        ``upload=False`` records manifest and fingerprint only (workers cannot merge into it).
        """
        from loreg.client.bases import build_base_registration

        body, entries, paths = build_base_registration(
            Path(folder),
            name,
            progress=progress,
            index=self.cache.hash_index(),
            workers=self.workers,
        )
        if description:
            body["description"] = description
        if upload:
            upload_missing(self.http, entries, paths, progress=progress, workers=self.workers)
            body["files"] = [e.to_dict() for e in entries]
        return Base.from_api(self._post("/bases", body, idempotent=True))

    def list_bases(self, *, q: str | None = None, limit: int | None = None) -> list[Base]:
        """Registered base models (``q``: the name contains it), without their tensors."""
        return Base.many(_jobs.paginate(self.http, "/bases", {"q": q}, key="bases", limit=limit))

    def get_base(self, name: str) -> Base:
        """A base model with its manifest (every tensor's dtype and shape) and files."""
        return Base.from_api(self.http.json("GET", f"/bases/{name}"))

    # --- adapters ------------------------------------------------------------------------

    def search(
        self,
        namespace: str | None = None,
        *,
        base: str | None = None,
        target: str | None = None,
        rank_min: int | None = None,
        rank_max: int | None = None,
        label: str | Sequence[str] | None = None,
        text: str | None = None,
        limit: int | None = None,
    ) -> Iterator[Adapter]:
        """Adapters the caller may read that match every filter given, page by page."""
        params = {
            "namespace": namespace,
            "base": base,
            "target": target,
            "rank_min": rank_min,
            "rank_max": rank_max,
            "text": text,
            "label": [label] if isinstance(label, str) else (list(label) if label else None),
        }
        pages = _jobs.paginate(self.http, "/adapters", params, key="adapters", limit=limit)
        return (Adapter.from_api(doc) for doc in pages)

    def get_adapter(self, name: str) -> Adapter:
        """An adapter as a whole: visibility, description, version count, tags."""
        ns, nm, _, _ = split_ref(name)
        return Adapter.from_api(self.http.json("GET", f"/adapters/{ns}/{nm}"))

    def update_adapter(
        self, name: str, *, public: bool | None = None, description: str | None = None
    ) -> Adapter:
        """Change an adapter's visibility or description (``None`` leaves it as it is)."""
        ns, nm, _, _ = split_ref(name)
        body = {
            k: v for k, v in {"public": public, "description": description}.items() if v is not None
        }
        return Adapter.from_api(
            self.http.json("PATCH", f"/adapters/{ns}/{nm}", json=body, idempotent=True)
        )

    def list_versions(self, name: str, *, include_deleted: bool = False) -> list[Version]:
        """Versions of ``ns/name``, newest first (deleted ones too when asked)."""
        ns, nm, _, _ = split_ref(name)
        params = {"include_deleted": "true" if include_deleted else None}
        return Version.many(
            _jobs.paginate(self.http, f"/adapters/{ns}/{nm}/versions", params, key="versions")
        )

    def delete_version(self, ref: str, reason: str) -> Version:
        """Soft-delete the version ``ref`` names; its tags go, ``latest`` falls back."""
        ns, nm, selector = self._version_selector(ref)
        return Version.from_api(
            self.http.json(
                "DELETE", f"/adapters/{ns}/{nm}/versions/{selector}", params={"reason": reason}
            )
        )

    def restore_version(self, ref: str) -> Version:
        """Undo a delete; ``ref`` names the version by number or digest (``ns/name@N``)."""
        ns, nm, kind, value = split_ref(ref)
        if kind == "tag":
            raise InvalidInput(
                f"{ref!r}: name the deleted version by number or digest (ns/name@N); "
                "list them with 'loreg versions ns/name --deleted'",
                code="invalid_reference",
                details={"ref": ref},
            )
        return Version.from_api(
            self.http.json("POST", f"/adapters/{ns}/{nm}/versions/{value}/restore", idempotent=True)
        )

    def _version_selector(self, ref: str) -> tuple[str, str, str]:
        """(namespace, name, number or digest) of the version any reference names."""
        ns, nm, kind, value = split_ref(ref)
        if kind == "tag":
            value = str(self.get_version(ref).number)
        return ns, nm, value

    def get_version(self, ref: str) -> Version:
        """The version a reference names (any form of docs/design.md §3), with its files."""
        ns, nm, kind, value = split_ref(ref)
        if kind == "tag":
            return self.resolve(ref)
        return Version.from_api(self.http.json("GET", f"/adapters/{ns}/{nm}/versions/{value}"))

    def resolve(self, ref: str) -> Version:
        """The version any reference names, tags resolved by the registry."""
        split_ref(ref)
        return Version.from_api(self.http.json("GET", "/resolve", params={"ref": ref}))

    def list_tags(self, name: str) -> list[Tag]:
        """An adapter's tags and the versions they point at."""
        ns, nm, _, _ = split_ref(name)
        return Tag.many(_jobs.paginate(self.http, f"/adapters/{ns}/{nm}/tags", {}, key="tags"))

    def set_tag(self, ref: str, tag: str, *, protected: bool | None = None) -> Tag:
        """Point ``tag`` at the version ``ref`` names (moving it if it exists).

        ``protected=True`` protects it (only namespace admins may then move or delete it);
        ``False`` lifts that; ``None`` leaves it as it is."""
        ns, nm, version = self._version_selector(ref)
        body: dict[str, Any] = {"version": int(version) if version.isdigit() else version}
        if protected is not None:
            body["protected"] = protected
        return Tag.from_api(
            self.http.json("PUT", f"/adapters/{ns}/{nm}/tags/{_segment(tag)}", json=body)
        )

    def delete_tag(self, name: str, tag: str) -> None:
        """Remove a tag (the version stays)."""
        ns, nm, _, _ = split_ref(name)
        self.http.json("DELETE", f"/adapters/{ns}/{nm}/tags/{_segment(tag)}")

    # --- webhooks and the audit log ------------------------------------------------------

    def create_webhook(
        self,
        namespace: str,
        url: str,
        *,
        events: Sequence[str] | None = None,
        secret: str | None = None,
        description: str | None = None,
        active: bool = True,
    ) -> NewWebhook:
        """A webhook on ``namespace``; the answer carries its signing ``secret`` (shown once)."""
        body: dict[str, Any] = {"url": url, "active": active}
        if events:
            body["events"] = list(events)
        if secret is not None:
            body["secret"] = secret
        if description is not None:
            body["description"] = description
        return NewWebhook.from_api(self._post(f"/namespaces/{_segment(namespace)}/webhooks", body))

    def list_webhooks(self, namespace: str) -> list[Webhook]:
        """A namespace's webhooks (namespace admins)."""
        out = self.http.json("GET", f"/namespaces/{_segment(namespace)}/webhooks")
        return Webhook.many(out["webhooks"])

    def test_webhook(self, namespace: str, webhook_id: int) -> Delivery:
        """Send a signed ``ping`` now; answers the delivery record (status, response code)."""
        return Delivery.from_api(
            self._post(f"/namespaces/{_segment(namespace)}/webhooks/{int(webhook_id)}/test", {})
        )

    def list_deliveries(
        self,
        namespace: str,
        webhook_id: int,
        *,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[Delivery]:
        """One webhook's delivery log, newest first."""
        out = self.http.json(
            "GET",
            f"/namespaces/{_segment(namespace)}/webhooks/{int(webhook_id)}/deliveries",
            params={"status": status, "limit": limit},
        )
        return Delivery.many(out["deliveries"])

    def delete_webhook(self, namespace: str, webhook_id: int) -> None:
        """Delete a webhook (its pending deliveries are dropped)."""
        self.http.json("DELETE", f"/namespaces/{_segment(namespace)}/webhooks/{int(webhook_id)}")

    def audit_events(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target_type: str | None = None,
        target: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        """Audit events, newest first (site administrators)."""
        params = {
            "actor": actor,
            "action": action,
            "target_type": target_type,
            "target": target,
            "since": since,
            "until": until,
        }
        return AuditEvent.many(
            _jobs.paginate(self.http, "/audit", params, key="events", limit=limit)
        )

    # --- push / pull ---------------------------------------------------------------------

    def push(
        self,
        folder: str | Path,
        target: str,
        *,
        base: str | None = None,
        tags: Sequence[str] = (),
        labels: dict[str, str] | None = None,
        description: str | None = None,
        public: bool | None = None,
        progress: ProgressFactory | None = None,
    ) -> PushResult:
        """Push a PEFT folder as a version of ``ns/name`` (``:tag`` sets that tag too)."""
        ns, nm, tag = split_target(target)
        files = list_folder(Path(folder))
        entries = hash_files(
            files, index=self.cache.hash_index(), progress=progress, workers=self.workers
        )
        paths = dict(files)
        n_files, n_bytes = upload_missing(
            self.http, entries, paths, progress=progress, workers=self.workers
        )
        all_tags = list(dict.fromkeys([*([tag] if tag else []), *tags]))
        body: dict[str, Any] = {"files": [e.to_dict() for e in entries]}
        if base is not None:
            body["base"] = base
        if all_tags:
            body["tags"] = all_tags
        if labels:
            body["labels"] = labels
        if description is not None:
            body["description"] = description
        if public is not None:
            body["public"] = public
        version = Version.from_api(
            self.http.json("POST", f"/adapters/{ns}/{nm}/versions", json=body, idempotent=True)
        )
        return PushResult(version, entries, n_files, n_bytes, sum(e.size for e in entries))

    def pull(
        self,
        ref: str,
        dest: str | Path | None = None,
        *,
        force: bool = False,
        progress: ProgressFactory | None = None,
    ) -> PullResult:
        """Download the version ``ref`` names into ``dest`` (default ``./NAME``), atomically.

        Offline (``LOREG_OFFLINE``), the version comes from the local cache, where an earlier
        pull left it (``loreg.client.offline``), or the pull fails with ``NotCached``.
        """
        ns, nm, kind, value = split_ref(ref)
        key = ref_forms(ns, nm, kind, value)
        if self.offline:
            version = self.versions.lookup(
                self.url, key, digest=value if kind == "digest" else None
            )
            missing = [f.path for f in version.files if not self.cache.path(f.digest).is_file()]
            if missing:
                raise NotCached(
                    f"LOREG_OFFLINE is set and {key} is only partly in the local cache "
                    f"(missing: {', '.join(missing)}): pull it once with the registry "
                    "reachable (unset LOREG_OFFLINE)",
                    details={"ref": key, "missing": missing},
                )
        else:
            version = self.get_version(ref)
        target = Path(dest) if dest is not None else Path.cwd() / nm
        result = materialize(
            self.http,
            self.cache,
            version.files,
            target,
            force=force,
            progress=progress,
            workers=self.workers,
            version=version,
        )
        if not self.offline:
            keys = [
                key,
                ref_forms(ns, nm, "digest", version.digest),
                ref_forms(ns, nm, "number", str(version.number)),
            ]
            self.versions.record(self.url, keys, version)
        return result

    # --- jobs ----------------------------------------------------------------------------

    def submit_job(self, job_type: str, params: dict[str, Any], **extra: Any) -> Job:
        """Queue a job of any type (docs/design.md §6); ``extra``: e.g. ``priority``."""
        return _jobs.submit(self.http, job_type, params, **extra)

    def get_job(self, job_id: str) -> Job:
        """A job's status, progress, result or error."""
        return _jobs.get(self.http, str(job_id))

    def list_jobs(
        self, *, status: str | None = None, type: str | None = None, limit: int | None = None
    ) -> list[Job]:
        """Jobs the caller may see, newest first."""
        return Job.many(
            _jobs.paginate(
                self.http, "/jobs", {"status": status, "type": type}, key="jobs", limit=limit
            )
        )

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a queued or running job (a running one stops at its next progress report)."""
        return _jobs.cancel(self.http, str(job_id))

    def wait_job(
        self,
        job_id: str,
        *,
        callback: JobCallback | None = None,
        poll: float = 0.5,
        timeout: float | None = None,
        raise_on_failure: bool = True,
    ) -> Job:
        """Poll until the job ends; ``JobFailed`` when it failed or was cancelled (unless
        ``raise_on_failure=False``). ``callback`` gets the job at every poll."""
        return _jobs.wait(
            self.http,
            str(job_id),
            callback=callback,
            poll=poll,
            timeout=timeout,
            raise_on_failure=raise_on_failure,
        )

    def job_outputs(self, job_id: str) -> JobOutputs:
        """A finished job's output files."""
        return _jobs.outputs(self.http, str(job_id))

    def download_job_outputs(
        self,
        job_id: str,
        dest: str | Path,
        *,
        force: bool = False,
        progress: ProgressFactory | None = None,
    ) -> PullResult:
        """Download a finished job's outputs into ``dest``, atomically, like a pull."""
        return _jobs.download_outputs(
            self.http, self.cache, str(job_id), Path(dest), force=force, progress=progress
        )

    def merge(
        self,
        refs: Sequence[str],
        base: str,
        *,
        weights: Sequence[float] | None = None,
        method: str | None = None,
        dtype: str | None = None,
        **params: Any,
    ) -> Job:
        """Submit a merge of one or more adapters into ``base``; returns the job."""
        body = _adapters_param(refs, weights)
        body.update({"base": base, "method": method, "dtype": dtype, **params})
        return self.submit_job("merge", {k: v for k, v in body.items() if v is not None})

    def combine(
        self,
        refs: Sequence[str],
        target: str,
        *,
        method: str = "linear",
        weights: Sequence[float] | None = None,
        **params: Any,
    ) -> Job:
        """Submit a combination of adapters into a new version at ``target``; returns the job."""
        split_target(target)
        body = _adapters_param(refs, weights)
        body.update({"target": target, "method": method, **params})
        return self.submit_job("combine", {k: v for k, v in body.items() if v is not None})

    def export(self, ref: str, *, dtype: str | None = None, **params: Any) -> Job:
        """Submit an export of one version as a PEFT folder (optionally cast); returns the job."""
        split_ref(ref)
        body = {"adapter": ref, "dtype": dtype, **params}
        return self.submit_job("export", {k: v for k, v in body.items() if v is not None})

    def validate(self, ref: str, **params: Any) -> Job:
        """Submit a tensor-level validation of one version; returns the job."""
        split_ref(ref)
        return self.submit_job("validate", {"adapter": ref, **params})

    # --- helpers -------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = self.http.json("POST", path, json=body, idempotent=idempotent)
        return out


def _segment(value: str) -> str:
    """One path segment: a name can never add a path of its own (``..``, ``/``)."""
    from urllib.parse import quote

    if not value or value in {".", ".."}:
        raise InvalidInput(f"{value!r} is not a valid name", code="invalid_name")
    return quote(value, safe="")


def _same_registry(a: str, b: str) -> bool:
    """Whether a stored token may go to ``b``: same URL, or both on this machine's loopback."""
    import httpx

    ua, ub = httpx.URL(a.rstrip("/")), httpx.URL(b.rstrip("/"))
    if ua == ub:
        return True
    loopback = {"127.0.0.1", "localhost", "::1"}
    return ua.host in loopback and ub.host in loopback


def _adapters_param(refs: Sequence[str], weights: Sequence[float] | None) -> dict[str, Any]:
    if not refs:
        raise InvalidInput("name at least one adapter reference")
    for r in refs:
        split_ref(r)
    if weights is not None and len(weights) != len(refs):
        raise InvalidInput(
            f"{len(weights)} weights for {len(refs)} adapters: give one weight per adapter",
            code="invalid_weights",
        )
    ws = list(weights) if weights is not None else [1.0] * len(refs)
    return {"adapters": [{"ref": r, "weight": w} for r, w in zip(refs, ws, strict=True)]}


__all__ = [
    "Adapter",
    "ApiError",
    "AuditEvent",
    "Base",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Delivery",
    "FileEntry",
    "Incompatible",
    "IntegrityError",
    "InvalidInput",
    "Job",
    "JobFailed",
    "JobOutputs",
    "Member",
    "NewToken",
    "NewUser",
    "NewWebhook",
    "NotCached",
    "NotFound",
    "Offline",
    "Org",
    "PermissionDenied",
    "PullResult",
    "PushResult",
    "ServerError",
    "Tag",
    "Token",
    "TooLarge",
    "Unauthenticated",
    "User",
    "Version",
    "Webhook",
    "WhoAmI",
    "save_credentials",
]
