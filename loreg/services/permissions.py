"""The authorisation matrix, as plain functions every service calls.

Who may do what is decided here and nowhere else:

- A principal is a user acting through a token. Its *level* in a namespace is its role
  there (``read`` < ``write`` < ``admin``; a user is ``admin`` of their personal namespace;
  a site admin is ``admin`` everywhere), **capped by the token's scope**: a read-scoped
  token can only read, even for a site admin.
- Public adapters are readable by anyone, anonymous callers included. Private adapters
  only by members of their namespace and site admins. An outsider asking for a private
  adapter gets ``NotFound``, not ``PermissionDenied``: they may not learn it exists.
- Writes need the ``write`` level (role and scope), namespace administration ``admin``.
- Anonymous callers get ``Unauthenticated`` for anything beyond reading public data.

The ``can_*`` functions answer yes/no; the ``require_*`` functions raise the right error.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import IntEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from loreg.db.models import Adapter, Membership, Namespace, NamespaceKind, Visibility
from loreg.errors import NotFound, PermissionDenied, Unauthenticated


class Level(IntEnum):
    """What a principal may do in a namespace; roles and token scopes map onto it."""

    NONE = 0
    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def of(cls, role: str | None) -> Level:
        return _LEVEL_BY_ROLE.get(role or "", cls.NONE)

    @property
    def role(self) -> str | None:
        return None if self is Level.NONE else self.name.lower()


_LEVEL_BY_ROLE = {"read": Level.READ, "write": Level.WRITE, "admin": Level.ADMIN}
ROLES = ("read", "write", "admin")


@dataclass(frozen=True)
class Principal:
    """Who is acting: a user, through a token with a scope. Plain data, no ORM state.

    Services receive ``Principal | None`` (``None`` is an anonymous caller). ``request_id``
    travels along so that audit records can name the request without another parameter.
    """

    user_id: int
    username: str
    namespace_id: int
    is_admin: bool
    scope: str
    token_id: int | None = None
    request_id: str | None = field(default=None, compare=False)
    #: when the token was last recorded as used (to refresh it at most once a minute)
    last_used_at: datetime | None = field(default=None, compare=False, repr=False)

    @property
    def scope_level(self) -> Level:
        return Level.of(self.scope)

    def with_request_id(self, request_id: str | None) -> Principal:
        return replace(self, request_id=request_id)


#: What services take as the acting party.
Actor = Principal | None


# --------------------------------------------------------------------------- levels


def role_in(session: Session, actor: Actor, namespace: Namespace) -> Level:
    """The actor's role in a namespace, *before* the token scope cap."""
    if actor is None:
        return Level.NONE
    implied = implied_role(actor, namespace.id, namespace.kind)
    if implied is not None:
        return implied
    role = session.scalar(
        select(Membership.role).where(
            Membership.namespace_id == namespace.id, Membership.user_id == actor.user_id
        )
    )
    return Level.of(role)


def implied_role(actor: Actor, namespace_id: int, namespace_kind: str) -> Level | None:
    """The role that needs no membership row (site admin; a user's own namespace), else
    ``None``: then the membership row decides."""
    if actor is None:
        return Level.NONE
    if actor.is_admin:
        return Level.ADMIN
    if namespace_kind == NamespaceKind.USER.value and namespace_id == actor.namespace_id:
        return Level.ADMIN
    return None


def can_read_row(
    actor: Actor,
    visibility: str,
    namespace_id: int,
    namespace_kind: str,
    membership_role: str | None,
) -> bool:
    """``can_read_adapter`` on plain column values (read paths that load rows, not ORM
    objects, fetch the caller's membership role in the same query)."""
    if visibility == Visibility.PUBLIC.value:
        return True
    role = implied_role(actor, namespace_id, namespace_kind)
    if role is None:
        role = Level.of(membership_role)
    return actor is not None and min(role, actor.scope_level) >= Level.READ


def level_in(session: Session, actor: Actor, namespace: Namespace) -> Level:
    """The effective level: the role, capped by the token's scope."""
    if actor is None:
        return Level.NONE
    return min(role_in(session, actor, namespace), actor.scope_level)


def is_site_admin(actor: Actor) -> bool:
    """A site administrator acting with an admin-scoped token."""
    return actor is not None and actor.is_admin and actor.scope_level >= Level.ADMIN


# --------------------------------------------------------------------------- predicates


def can_read_namespace(session: Session, actor: Actor, namespace: Namespace) -> bool:
    """Private contents of a namespace (members, private adapters): members and admins."""
    return level_in(session, actor, namespace) >= Level.READ


def readable_namespace_ids(session: Session, actor: Actor) -> set[int] | None:
    """Namespaces whose private contents ``actor`` may read; ``None`` means all (site admin).

    ``can_read_namespace`` as a query filter: a token of any scope can read, so the role alone
    decides (own namespace, or any membership). Keep the two in step.
    """
    if actor is None:
        return set()
    if actor.is_admin:
        return None
    ids = {actor.namespace_id}
    ids.update(
        session.scalars(select(Membership.namespace_id).where(Membership.user_id == actor.user_id))
    )
    return ids


def can_write_namespace(session: Session, actor: Actor, namespace: Namespace) -> bool:
    return level_in(session, actor, namespace) >= Level.WRITE


def can_admin_namespace(session: Session, actor: Actor, namespace: Namespace) -> bool:
    return level_in(session, actor, namespace) >= Level.ADMIN


def can_read_adapter(session: Session, actor: Actor, adapter: Adapter) -> bool:
    if adapter.visibility == Visibility.PUBLIC.value:
        return True
    return can_read_namespace(session, actor, adapter.namespace)


def can_write_adapter(session: Session, actor: Actor, adapter: Adapter) -> bool:
    return can_write_namespace(session, actor, adapter.namespace)


def can_admin_adapter(session: Session, actor: Actor, adapter: Adapter) -> bool:
    return can_admin_namespace(session, actor, adapter.namespace)


# --------------------------------------------------------------------------- requirements


def require_user(actor: Actor) -> Principal:
    """Any authenticated principal (whatever its scope)."""
    if actor is None:
        raise Unauthenticated("authentication required: send 'Authorization: Bearer <token>'")
    return actor


def require_scope(actor: Actor, scope: str) -> Principal:
    """An authenticated principal whose token scope is at least ``scope``."""
    principal = require_user(actor)
    if principal.scope_level < Level.of(scope):
        raise PermissionDenied(
            f"this token's scope is '{principal.scope}'; this needs a '{scope}'-scoped token",
            details={"token_scope": principal.scope, "required_scope": scope},
        )
    return principal


def require_site_admin(actor: Actor) -> Principal:
    principal = require_user(actor)
    if not principal.is_admin:
        raise PermissionDenied("only site administrators may do this")
    return require_scope(principal, "admin")


def _require_level(
    session: Session, actor: Actor, namespace: Namespace, needed: Level, what: str
) -> Principal:
    principal = require_user(actor)
    role = role_in(session, principal, namespace)
    if min(role, principal.scope_level) >= needed:
        return principal
    if role >= needed:
        # the role would do; the token is what is missing
        return require_scope(principal, needed.role or "read")
    raise PermissionDenied(
        f"{what} in namespace '{namespace.name}' needs the '{needed.role}' role",
        details={"namespace": namespace.name, "required_role": needed.role, "role": role.role},
    )


def require_write_namespace(session: Session, actor: Actor, namespace: Namespace) -> Principal:
    """Write into a namespace (namespaces are public, so an outsider gets a 403)."""
    return _require_level(session, actor, namespace, Level.WRITE, "writing")


def require_admin_namespace(session: Session, actor: Actor, namespace: Namespace) -> Principal:
    return _require_level(session, actor, namespace, Level.ADMIN, "administration")


def adapter_not_found(namespace: str, name: str) -> NotFound:
    """The one message for 'no such adapter' and 'not yours to know about'."""
    return NotFound(
        f"adapter '{namespace}/{name}' not found", details={"namespace": namespace, "name": name}
    )


def require_read_adapter(session: Session, actor: Actor, adapter: Adapter) -> None:
    """Readable, or a ``NotFound`` indistinguishable from a missing adapter."""
    if not can_read_adapter(session, actor, adapter):
        raise adapter_not_found(adapter.namespace.name, adapter.name)


def require_write_adapter(session: Session, actor: Actor, adapter: Adapter) -> Principal:
    """Write to an adapter: ``NotFound`` if the actor may not even see it, else 401/403."""
    require_read_adapter(session, actor, adapter)
    return require_write_namespace(session, actor, adapter.namespace)


def require_admin_adapter(session: Session, actor: Actor, adapter: Adapter) -> Principal:
    require_read_adapter(session, actor, adapter)
    return require_admin_namespace(session, actor, adapter.namespace)
