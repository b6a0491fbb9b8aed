"""What the client's methods return: typed views of the registry's JSON documents.

Each model names the fields a caller reads (``version.number``, ``job.status``), parsed and
typed (timestamps are ``datetime``); fields the registry adds later are ignored here and
kept in the document. ``to_dict()`` gives back the document exactly as the registry sent it,
which is what ``loreg ... --json`` prints, so the command line's JSON stays the API's.

Fields a registry always sends are required; the rest have defaults, so a version recorded
for offline pulls (a subset of the fields) still reads as a ``Version``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from loreg.client.errors import ServerError
from loreg.refs import FileEntry

Scope = Literal["read", "write", "admin"]
#: Job statuses after which nothing changes.
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class Document(BaseModel):
    """A typed, read-only view of one JSON document, which it keeps as sent."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    _doc: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_document(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        model = handler(data)
        if isinstance(data, dict):
            model._doc = data
        return model

    @classmethod
    def from_api(cls, doc: Any) -> Self:
        """Parse an API answer; one the client cannot read is a ``ServerError``."""
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "the document"
            raise ServerError(
                f"the registry answered a {cls.__name__.lower()} this client cannot read "
                f"({where}: {first.get('msg')}); is LOREG_URL a loreg registry of this "
                "release?",
                code="unexpected_answer",
            ) from None

    @classmethod
    def many(cls, docs: Iterable[Any]) -> list[Self]:
        return [cls.from_api(d) for d in docs]

    def to_dict(self) -> dict[str, Any]:
        """The document as the registry sent it (``--json`` prints this)."""
        return self._doc


# --- accounts ------------------------------------------------------------------------------


class Membership(Document):
    """An organisation the caller belongs to, with the caller's role there."""

    name: str
    role: Scope


class WhoAmI(Document):
    """Who a token belongs to (``GET /whoami``)."""

    user: str
    is_admin: bool = False
    namespace: str = ""
    scope: Scope | None = None
    token_id: int | None = None
    orgs: list[Membership] = []


class User(Document):
    """An account; ``email`` and ``disabled`` come in the administrators' list."""

    name: str
    is_admin: bool = False
    created_at: datetime | None = None
    email: str | None = None
    disabled: bool = False


class Token(Document):
    """An API token's record (never its value, except in ``NewToken``)."""

    id: int
    name: str
    scope: Scope
    prefix: str = ""
    created_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class NewToken(Token):
    """A token just created: ``token`` is its value, shown this once."""

    token: str


class NewUser(Document):
    """A user just created, with its first token when one was issued."""

    user: User
    token: NewToken | None = None


class Member(Document):
    """A member of an organisation and their role."""

    user: str
    role: Scope


class Org(Document):
    """An organisation. ``members`` is filled for its members and site administrators;
    ``role`` (in listings) is the caller's role, ``None`` when not a member."""

    name: str
    description: str = ""
    created_at: datetime | None = None
    members: list[Member] | None = None
    role: Scope | None = None


# --- base models ---------------------------------------------------------------------------


class TensorSpec(Document):
    dtype: str
    shape: list[int]


class Base(Document):
    """A registered base model. ``tensors``, ``aliases`` and ``files`` come with one base
    (``get_base``), not in listings; ``has_weights``: its files are in the registry, so
    workers can merge into it."""

    name: str
    fingerprint: str
    structure_hash: str = ""
    num_parameters: int = 0
    size_bytes: int = 0
    num_tensors: int = 0
    has_weights: bool = False
    description: str = ""
    created_at: datetime | None = None
    created_by: str | None = None
    tensors: dict[str, TensorSpec] = {}
    aliases: dict[str, str] = {}
    files: list[FileEntry] = []


# --- adapters, versions, tags --------------------------------------------------------------


class BaseRef(Document):
    """The base a version was checked against."""

    name: str
    fingerprint: str


class Compatibility(Document):
    """How a version fits its base (docs/design.md §5): ``match`` is ``exact``,
    ``structural`` or ``unverified``; ``match_hint`` says what would make it exact."""

    compatible: bool | None = None
    match: str | None = None
    match_hint: str | None = None
    problems: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []


class Parent(Document):
    """One parent of a combined adapter: which version, with what weight and method."""

    parent: str
    weight: float
    method: str
    params: dict[str, Any] = {}


class Version(Document):
    """An immutable adapter version: what it is (docs/design.md §4) and its files.

    ``created`` and ``job_id`` are set on a push's answer: whether it made a new version
    (``False``: identical content answered an existing one) and its validation job."""

    namespace: str
    name: str
    number: int
    digest: str
    ref: str = ""
    peft_type: str | None = None
    task_type: str | None = None
    r: int | None = None
    lora_alpha: float | None = None
    use_rslora: bool = False
    use_dora: bool = False
    rank_pattern: dict[str, Any] = {}
    alpha_pattern: dict[str, Any] = {}
    target_modules: list[str] | str | None = None
    modules_to_save: list[str] | None = None
    fan_in_fan_out: bool = False
    dtype: str | None = None
    num_parameters: int | None = None
    size_bytes: int | None = None
    total_size: int | None = None
    adapter_config: dict[str, Any] = {}
    base: str | None = None
    base_model: BaseRef | None = None
    base_model_name_or_path: str | None = None
    labels: dict[str, Any] = {}
    description: str = ""
    owner: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    validation_state: str | None = None
    validation_report: dict[str, Any] | None = None
    compatibility: Compatibility | None = None
    tags: list[str] = []
    files: list[FileEntry] = []
    lineage: list[Parent] = []
    deleted_at: datetime | None = None
    delete_reason: str | None = None
    created: bool | None = None
    job_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_ref(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("ref"):
            data = {
                **data,
                "ref": f"{data.get('namespace')}/{data.get('name')}@{data.get('number')}",
            }
        return data

    @property
    def adapter(self) -> str:
        """``ns/name`` of the adapter this version belongs to."""
        return f"{self.namespace}/{self.name}"


class LatestVersion(Document):
    """The summary of an adapter's newest version that listings carry."""

    number: int
    digest: str
    r: int | None = None
    base: str | None = None
    target_modules: list[str] | str | None = None
    validation_state: str | None = None
    created_at: datetime | None = None


class Adapter(Document):
    """An adapter as a whole: visibility, description, how many versions, its tags
    (name -> version number)."""

    namespace: str
    name: str
    public: bool = False
    visibility: str = "private"
    description: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    created_by: str | None = None
    versions_count: int = 0
    latest: LatestVersion | None = None
    base: str | None = None
    tags: dict[str, int] = {}

    @property
    def full_name(self) -> str:
        """``ns/name``."""
        return f"{self.namespace}/{self.name}"


class Tag(Document):
    """A tag and the version it points at; ``automatic``: set by the registry (``latest``)."""

    name: str
    number: int
    digest: str
    protected: bool = False
    automatic: bool = False
    updated_at: datetime | None = None
    updated_by: str | None = None


# --- webhooks and the audit log ------------------------------------------------------------


class Webhook(Document):
    """A namespace's webhook: where it posts, and which events."""

    id: int
    namespace: str
    url: str
    events: list[str] = []
    active: bool = True
    description: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


class NewWebhook(Webhook):
    """A webhook just created: ``secret`` signs its deliveries, shown this once."""

    secret: str


class Delivery(Document):
    """One event sent (or being sent) to a webhook, with its attempts."""

    id: int
    event_id: str = ""
    event_type: str
    status: str
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    created_at: datetime | None = None
    attempt_log: list[dict[str, Any]] = []


class AuditEvent(Document):
    """Who did what to which target, when."""

    id: int
    at: datetime
    actor: str | None = None
    action: str
    target_type: str = ""
    target: str = ""
    details: dict[str, Any] = {}
    request_id: str | None = None


# --- jobs ----------------------------------------------------------------------------------


class Job(Document):
    """A job on the registry's workers (docs/design.md §6): status, progress 0..1 with a
    message, attempts, and its ``result`` or ``error`` once it ended."""

    id: str
    type: str
    status: str  # queued, running, succeeded, failed or cancelled
    priority: int = 0
    params: dict[str, Any] = {}
    submitted_by: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    attempts: int = 0
    max_attempts: int | None = None
    worker: str | None = None
    lease_expires_at: datetime | None = None
    progress: float = 0.0
    progress_message: str = ""
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    cancel_requested: bool = False
    outputs_expire_at: datetime | None = None
    duration_seconds: float | None = None
    deduplicated: bool = False

    @property
    def done(self) -> bool:
        """Whether the job has ended (succeeded, failed or cancelled)."""
        return self.status in TERMINAL

    @property
    def error_code(self) -> str | None:
        code = (self.error or {}).get("code")
        return code if isinstance(code, str) else None

    @property
    def error_message(self) -> str | None:
        message = (self.error or {}).get("message")
        return message if isinstance(message, str) else None


class JobOutputs(Document):
    """A finished job's output files (each a blob)."""

    job_id: str
    files: list[FileEntry] = []
    total_size: int = 0


__all__ = [
    "TERMINAL",
    "Adapter",
    "AuditEvent",
    "Base",
    "BaseRef",
    "Compatibility",
    "Delivery",
    "Document",
    "Job",
    "JobOutputs",
    "LatestVersion",
    "Member",
    "Membership",
    "NewToken",
    "NewUser",
    "NewWebhook",
    "Org",
    "Parent",
    "Tag",
    "TensorSpec",
    "Token",
    "User",
    "Version",
    "Webhook",
    "WhoAmI",
]
