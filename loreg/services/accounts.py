"""Accounts: users, organisations, memberships and API tokens; token authentication.

Users and organisations share one namespace of names (a user's personal namespace has the
user's name). Tokens are ``lrg_`` + random text; only their sha256 is stored, so the value
is shown once, at creation. Every write here records an audit event in the same
transaction; nothing here commits.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from loreg.db.models import ApiToken, Membership, Namespace, NamespaceKind, User
from loreg.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from loreg.refs import validate_name
from loreg.services import audit
from loreg.services.pagination import (
    DEFAULT_LIMIT,
    Page,
    check_limit,
    cursor_int,
    decode_cursor,
    page_of,
)
from loreg.services.permissions import (
    ROLES,
    Actor,
    Level,
    Principal,
    can_read_namespace,
    require_admin_namespace,
    require_scope,
    require_site_admin,
    require_user,
)

TOKEN_PREFIX = "lrg_"
#: How stale ``last_used_at`` may get before a use refreshes it.
LAST_USED_RESOLUTION = timedelta(seconds=60)
MAX_TOKEN_DAYS = 3650
MAX_TOKEN_LENGTH = 256
ADMIN_NAME = "admin"


def _now() -> datetime:
    return datetime.now(UTC)


def hash_token(value: str) -> str:
    """What the DB stores for a token: its sha256, hex."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def validate_role(role: str, *, what: str = "role") -> str:
    if role not in ROLES:
        raise InvalidInput(
            f"{what} must be one of {', '.join(ROLES)}",
            details={"field": what, "allowed": list(ROLES)},
        )
    return role


# --------------------------------------------------------------------------- lookups


def get_user(session: Session, name: str) -> User:
    validate_name(name, what="user name")
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"user '{name}' not found", details={"user": name})
    return user


def get_namespace(session: Session, name: str) -> Namespace:
    validate_name(name, what="namespace")
    ns = session.scalar(select(Namespace).where(Namespace.name == name))
    if ns is None:
        raise NotFound(f"namespace '{name}' not found", details={"namespace": name})
    return ns


def get_org(session: Session, name: str) -> Namespace:
    validate_name(name, what="organisation name")
    ns = session.scalar(
        select(Namespace).where(Namespace.name == name, Namespace.kind == NamespaceKind.ORG.value)
    )
    if ns is None:
        raise NotFound(f"organisation '{name}' not found", details={"org": name})
    return ns


def _ensure_name_free(session: Session, name: str) -> None:
    if session.scalar(select(Namespace.id).where(Namespace.name == name)) is not None:
        raise Conflict(
            f"the name '{name}' is already taken by a user or organisation", details={"name": name}
        )


# --------------------------------------------------------------------------- users


def _create_user(session: Session, name: str, *, is_admin: bool, email: str | None) -> User:
    validate_name(name, what="user name")
    _ensure_name_free(session, name)
    ns = Namespace(name=name, kind=NamespaceKind.USER.value)
    session.add(ns)
    session.flush()
    user = User(name=name, namespace_id=ns.id, namespace=ns, is_admin=is_admin, email=email)
    session.add(user)
    session.flush()
    return user


def create_user(
    session: Session,
    actor: Actor,
    name: str,
    *,
    is_admin: bool = False,
    email: str | None = None,
) -> User:
    """A user and their personal namespace (site admins only)."""
    require_site_admin(actor)
    user = _create_user(session, name, is_admin=is_admin, email=email)
    audit.record(session, actor, "user.create", "user", name, {"is_admin": is_admin})
    return user


def list_users(
    session: Session,
    actor: Actor,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[User]:
    """Every account, by name (site admins: the list says who can sign in at all)."""
    require_site_admin(actor)
    check_limit(limit)
    stmt = select(User)
    after = decode_cursor("users", cursor)
    if after is not None:
        name = after.get("name")
        if not isinstance(name, str):
            raise InvalidInput("invalid cursor", details={"field": "cursor"})
        stmt = stmt.where(User.name > name)
    rows = list(session.scalars(stmt.order_by(User.name).limit(limit + 1)))
    return page_of(rows, limit, "users", lambda u: {"name": u.name})


# --------------------------------------------------------------------------- organisations


def create_org(session: Session, actor: Actor, name: str, *, description: str = "") -> Namespace:
    """An organisation namespace; its creator becomes its first admin."""
    principal = require_scope(actor, "write")
    validate_name(name, what="organisation name")
    _ensure_name_free(session, name)
    ns = Namespace(name=name, kind=NamespaceKind.ORG.value, description=description)
    session.add(ns)
    session.flush()
    session.add(Membership(namespace_id=ns.id, user_id=principal.user_id, role="admin"))
    session.flush()
    audit.record(session, actor, "org.create", "org", name)
    return ns


@dataclass(frozen=True)
class OrgInfo:
    org: Namespace
    role: str | None


def list_orgs(
    session: Session,
    actor: Actor,
    *,
    mine: bool = False,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[OrgInfo]:
    """Organisations by id, each with the caller's role (``None`` when not a member).

    Names and descriptions are public facts (``GET /orgs/{name}`` shows them to anyone);
    ``mine`` keeps only the caller's own organisations."""
    principal = require_user(actor)
    check_limit(limit)
    role = (
        select(Membership.role)
        .where(Membership.namespace_id == Namespace.id, Membership.user_id == principal.user_id)
        .scalar_subquery()
    )
    stmt = select(Namespace, role).where(Namespace.kind == NamespaceKind.ORG.value)
    if mine:
        stmt = stmt.where(role.is_not(None))
    after = cursor_int(decode_cursor("orgs", cursor), "id")
    if after is not None:
        stmt = stmt.where(Namespace.id > after)
    rows = [
        OrgInfo(ns, r) for ns, r in session.execute(stmt.order_by(Namespace.id).limit(limit + 1))
    ]
    return page_of(rows, limit, "orgs", lambda o: {"id": o.org.id})


@dataclass(frozen=True)
class MemberInfo:
    user: str
    role: str


def list_members(session: Session, actor: Actor, org: Namespace) -> list[MemberInfo] | None:
    """The members, for those allowed to see them (members, site admins); else ``None``."""
    if not can_read_namespace(session, actor, org):
        return None
    rows = session.execute(
        select(User.name, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.namespace_id == org.id)
        .order_by(User.name)
    )
    return [MemberInfo(user=name, role=role) for name, role in rows]


def memberships_of(session: Session, actor: Actor) -> list[tuple[str, str]]:
    """(organisation, role) for every organisation the acting user belongs to."""
    principal = require_user(actor)
    rows = session.execute(
        select(Namespace.name, Membership.role)
        .join(Membership, Membership.namespace_id == Namespace.id)
        .where(Membership.user_id == principal.user_id)
        .order_by(Namespace.name)
    )
    return [(name, role) for name, role in rows]


def add_member(
    session: Session, actor: Actor, org_name: str, user_name: str, role: str
) -> Membership:
    """Add a user to an organisation, or change their role (org admins only)."""
    validate_role(role)
    validate_name(user_name, what="user name")
    org = get_org(session, org_name)
    require_admin_namespace(session, actor, org)
    user = get_user(session, user_name)
    membership = session.get(Membership, (org.id, user.id))
    previous = membership.role if membership is not None else None
    if membership is None:
        membership = Membership(namespace_id=org.id, user_id=user.id, role=role)
        session.add(membership)
    else:
        if previous == "admin" and role != "admin":
            _ensure_other_admin(session, org, user)
        membership.role = role
    session.flush()
    audit.record(
        session,
        actor,
        "org.member.set",
        "org",
        org.name,
        {"user": user.name, "role": role, "previous_role": previous},
    )
    return membership


def _ensure_other_admin(session: Session, org: Namespace, user: User) -> None:
    admins = session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(
            Membership.namespace_id == org.id,
            Membership.role == "admin",
            Membership.user_id != user.id,
        )
    )
    if not admins:
        raise Conflict(
            f"'{user.name}' is the last admin of '{org.name}'",
            details={"org": org.name, "user": user.name},
        )


def remove_member(session: Session, actor: Actor, org_name: str, user_name: str) -> None:
    """Remove a member (org admins; any member may also leave with a write-scoped token)."""
    principal = require_user(actor)
    validate_name(user_name, what="user name")
    org = get_org(session, org_name)
    if user_name == principal.username:
        require_scope(principal, "write")
        user = get_user(session, user_name)
    else:
        require_admin_namespace(session, actor, org)
        user = get_user(session, user_name)
    membership = session.get(Membership, (org.id, user.id))
    if membership is None:
        raise NotFound(
            f"'{user_name}' is not a member of '{org.name}'",
            details={"org": org.name, "user": user_name},
        )
    if membership.role == "admin":
        _ensure_other_admin(session, org, user)
    session.delete(membership)
    session.flush()
    audit.record(session, actor, "org.member.remove", "org", org.name, {"user": user.name})


# --------------------------------------------------------------------------- tokens


def _issue_token(
    session: Session,
    user: User | Principal,
    name: str,
    scope: str,
    expires_at: datetime | None,
) -> tuple[ApiToken, str]:
    value = generate_token()
    user_id = user.id if isinstance(user, User) else user.user_id
    token = ApiToken(
        user_id=user_id,
        name=name,
        token_hash=hash_token(value),
        prefix=value[:12],
        scope=scope,
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    return token, value


def create_token(
    session: Session,
    actor: Actor,
    name: str,
    *,
    scope: str = "write",
    expires_in_days: int | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token for the acting user; returns the row and the value (shown only once).

    A token can mint tokens of at most its own scope, so a leaked write token cannot
    become an admin one; read-scoped tokens cannot mint at all.
    """
    principal = require_scope(actor, "write")
    validate_name(name, what="token name")
    validate_role(scope, what="scope")
    if Level.of(scope) > principal.scope_level:
        raise PermissionDenied(
            f"a '{principal.scope}'-scoped token cannot create a '{scope}'-scoped token",
            details={"token_scope": principal.scope, "requested_scope": scope},
        )
    if expires_in_days is not None and expires_at is not None:
        raise InvalidInput("give expires_in_days or expires_at, not both")
    if expires_in_days is not None:
        if not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
            raise InvalidInput(
                f"expires_in_days must be between 1 and {MAX_TOKEN_DAYS}",
                details={"field": "expires_in_days"},
            )
        expires_at = _now() + timedelta(days=expires_in_days)
    elif expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidInput(
                "expires_at must include a time zone", details={"field": "expires_at"}
            )
        if expires_at <= _now():
            raise InvalidInput("expires_at must be in the future", details={"field": "expires_at"})
        if expires_at > _now() + timedelta(days=MAX_TOKEN_DAYS):
            raise InvalidInput(
                f"expires_at is more than {MAX_TOKEN_DAYS} days away",
                details={"field": "expires_at"},
            )
    token, value = _issue_token(session, principal, name, scope, expires_at)
    audit.record(
        session,
        actor,
        "token.create",
        "token",
        str(token.id),
        {
            "name": name,
            "scope": scope,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return token, value


def create_token_for(
    session: Session, actor: Actor, user: User, name: str, *, scope: str = "write"
) -> tuple[ApiToken, str]:
    """A token for another user (site admins only, e.g. a new user's first token)."""
    require_site_admin(actor)
    validate_name(name, what="token name")
    validate_role(scope, what="scope")
    token, value = _issue_token(session, user, name, scope, None)
    audit.record(
        session,
        actor,
        "token.create",
        "token",
        str(token.id),
        {"name": name, "scope": scope, "user": user.name},
    )
    return token, value


def list_tokens(session: Session, actor: Actor) -> list[ApiToken]:
    """The acting user's tokens, newest first, revoked and expired ones included."""
    principal = require_user(actor)
    return list(
        session.scalars(
            select(ApiToken)
            .where(ApiToken.user_id == principal.user_id)
            .order_by(ApiToken.id.desc())
        )
    )


def revoke_token(session: Session, actor: Actor, token_id: int) -> ApiToken:
    """Revoke one of one's own tokens (site admins: anyone's). Idempotent.

    Any token may revoke itself (log out); revoking another needs a write-scoped token.
    """
    principal = require_user(actor)
    token = session.get(ApiToken, token_id)
    if token is None or (token.user_id != principal.user_id and not principal.is_admin):
        raise NotFound(f"token {token_id} not found", details={"token_id": token_id})
    if token.id != principal.token_id:
        if token.user_id == principal.user_id:
            require_scope(principal, "write")
        else:
            require_site_admin(principal)
    if token.revoked_at is None:
        token.revoked_at = _now()
        session.flush()
        audit.record(
            session,
            actor,
            "token.revoke",
            "token",
            str(token.id),
            {"name": token.name, "user_id": token.user_id},
        )
    return token


_TOKEN_LOOKUP = (
    select(
        ApiToken.id,
        ApiToken.scope,
        ApiToken.expires_at,
        ApiToken.revoked_at,
        ApiToken.last_used_at,
        User.id,
        User.name,
        User.namespace_id,
        User.is_admin,
        User.disabled,
    )
    .join(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)


def authenticate(
    session: Session | Connection, value: str, *, now: datetime | None = None
) -> Principal:
    """The principal a bearer token stands for, or ``Unauthenticated``.

    A pure read: one indexed lookup of plain columns (no ORM rows), so a read request stays
    read-only. Whether the token's ``last_used_at`` needs refreshing is
    :func:`last_use_due`; the API records it off the request path
    (``loreg.api.usage.TokenUses``).
    """
    now = now or _now()
    if not value.startswith(TOKEN_PREFIX) or len(value) > MAX_TOKEN_LENGTH or not value.isascii():
        raise Unauthenticated("invalid token")
    conn = session if isinstance(session, Connection) else session.connection()
    row = conn.execute(_TOKEN_LOOKUP, {"token_hash": hash_token(value)}).first()
    if row is None:
        raise Unauthenticated("invalid token")
    (
        token_id,
        scope,
        expires_at,
        revoked_at,
        last_used_at,
        user_id,
        username,
        namespace_id,
        is_admin,
        disabled,
    ) = row
    _check_usable(revoked_at, expires_at, disabled, now)
    return Principal(
        user_id=user_id,
        username=username,
        namespace_id=namespace_id,
        is_admin=is_admin,
        scope=scope,
        token_id=token_id,
        last_used_at=_aware(last_used_at),
    )


def _aware(value: datetime | None) -> datetime | None:
    """Core rows skip the ORM's UTC type on SQLite (naive UTC there); make them aware."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _check_usable(
    revoked_at: datetime | None, expires_at: datetime | None, disabled: bool, now: datetime
) -> None:
    if revoked_at is not None:
        raise Unauthenticated("token has been revoked")
    expires_at = _aware(expires_at)
    if expires_at is not None and expires_at <= now:
        raise Unauthenticated("token has expired")
    if disabled:
        raise Unauthenticated("account is disabled")


def principal_of(token: ApiToken, user: User, *, now: datetime | None = None) -> Principal:
    """The principal a token row stands for if it is still good (not revoked or expired, the
    account enabled), else ``Unauthenticated``. Reads only, like :func:`authenticate`."""
    now = now or _now()
    _check_usable(token.revoked_at, token.expires_at, user.disabled, now)
    return Principal(
        user_id=user.id,
        username=user.name,
        namespace_id=user.namespace_id,
        is_admin=user.is_admin,
        scope=token.scope,
        token_id=token.id,
        last_used_at=token.last_used_at,
    )


def last_use_due(principal: Principal, now: datetime | None = None) -> bool:
    """Whether this use should refresh the token's ``last_used_at`` (at most once per
    ``LAST_USED_RESOLUTION``)."""
    if principal.token_id is None:
        return False
    last = principal.last_used_at
    return last is None or (now or _now()) - last >= LAST_USED_RESOLUTION


def record_token_uses(session: Session, uses: dict[int, datetime]) -> None:
    """Store the latest use of each token (``{token id: when}``); never moves a time back.
    The caller commits."""
    for token_id, at in uses.items():
        session.execute(
            update(ApiToken)
            .where(
                ApiToken.id == token_id,
                or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < at),
            )
            .values(last_used_at=at)
            .execution_options(synchronize_session=False)
        )


def acting_user(session: Session, user_id: int | None, *, scope: str) -> Principal | None:
    """The principal a job acts as: its submitter, with the scope the job needs (checked
    again by every service it calls); ``None`` if that user no longer exists."""
    user = session.get(User, user_id) if user_id is not None else None
    if user is None:
        return None
    return Principal(
        user_id=user.id,
        username=user.name,
        namespace_id=user.namespace_id,
        is_admin=user.is_admin,
        scope=scope,
    )


# --------------------------------------------------------------------------- first start


def bootstrap_admin(session: Session, *, name: str = ADMIN_NAME) -> tuple[User, str] | None:
    """On a database without users: create site admin ``name`` and an admin-scoped token.

    Returns the user and the token value, or ``None`` when any user exists already.
    """
    if session.scalar(select(User.id).limit(1)) is not None:
        return None
    user = _create_user(session, name, is_admin=True, email=None)
    token, value = _issue_token(session, user, "bootstrap", "admin", None)
    audit.record(session, None, "user.bootstrap", "user", name, {"token_id": token.id})
    return user, value
