"""Users, organisations, members, tokens and ``whoami``: parse, call the service, commit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status
from sqlalchemy.orm import Session

from loreg.api.deps import CurrentUser, OptionalUser, SessionDep, flush_token_uses
from loreg.api.openapi import errors
from loreg.api.schemas.accounts import (
    MemberAdd,
    MemberOut,
    OrgCreate,
    OrgList,
    OrgOut,
    OrgSummary,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
    UserCreate,
    UserCreated,
    UserList,
    UserListItem,
    UserOut,
    WhoAmI,
)
from loreg.api.schemas.common import NAME_MAX, NAME_PATTERN, as_utc
from loreg.db.models import ApiToken, Namespace
from loreg.services import accounts
from loreg.services.pagination import DEFAULT_LIMIT, MAX_LIMIT
from loreg.services.permissions import Principal

router = APIRouter(tags=["accounts"])

OrgName = Annotated[
    str, Path(max_length=NAME_MAX, pattern=NAME_PATTERN, description="Organisation name")
]
UserName = Annotated[str, Path(max_length=NAME_MAX, pattern=NAME_PATTERN, description="User name")]
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Token id")]


def _token_created(token: ApiToken, value: str) -> TokenCreated:
    return TokenCreated(**TokenOut.model_validate(token).model_dump(), token=value)


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserCreated,
    summary="Create a user (site administrators)",
    responses=errors(403, 409),
)
def create_user(body: UserCreate, session: SessionDep, actor: CurrentUser) -> UserCreated:
    """Create a user and their personal namespace. Site administrators only (admin-scoped
    token). Unless `create_token` is false, the answer carries the user's first token, shown
    once.
    """
    user = accounts.create_user(session, actor, body.name, is_admin=body.admin, email=body.email)
    token = None
    if body.create_token:
        row, value = accounts.create_token_for(
            session, actor, user, "default", scope=body.token_scope
        )
        token = _token_created(row, value)
    session.commit()
    return UserCreated(user=UserOut.model_validate(user), token=token)


@router.get(
    "/users",
    response_model=UserList,
    summary="List users (site administrators)",
    responses=errors(403),
)
def list_users(
    session: SessionDep,
    actor: CurrentUser,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> UserList:
    """Every account by name, with its admin flag and email. Needs a site administrator's
    admin-scoped token."""
    page = accounts.list_users(session, actor, cursor=cursor, limit=limit)
    return UserList(
        users=[UserListItem.model_validate(u) for u in page.items], next_cursor=page.next_cursor
    )


@router.get("/orgs", response_model=OrgList, summary="List organisations")
def list_orgs(
    session: SessionDep,
    actor: CurrentUser,
    mine: Annotated[bool, Query(description="Only organisations the caller belongs to")] = False,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> OrgList:
    """Organisations in creation order, each with the caller's role in it (null when the
    caller is not a member). Member lists are on ``GET /orgs/{name}``."""
    page = accounts.list_orgs(session, actor, mine=mine, cursor=cursor, limit=limit)
    return OrgList(
        orgs=[
            OrgSummary.model_validate(
                {
                    "name": o.org.name,
                    "description": o.org.description,
                    "created_at": o.org.created_at,
                    "role": o.role,
                }
            )
            for o in page.items
        ],
        next_cursor=page.next_cursor,
    )


def _org_out(session: Session, actor: Principal | None, org: Namespace) -> OrgOut:
    members = accounts.list_members(session, actor, org)
    return OrgOut.model_validate(
        {
            "name": org.name,
            "description": org.description,
            "created_at": org.created_at,
            "members": None
            if members is None
            else [{"user": m.user, "role": m.role} for m in members],
        }
    )


@router.post(
    "/orgs",
    status_code=status.HTTP_201_CREATED,
    response_model=OrgOut,
    summary="Create an organisation (the caller becomes its admin)",
    responses=errors(403, 409),
)
def create_org(body: OrgCreate, session: SessionDep, actor: CurrentUser) -> OrgOut:
    """Create an organisation namespace; the caller becomes its first admin. 409 when a user or
    organisation already has the name.
    """
    org = accounts.create_org(session, actor, body.name, description=body.description)
    out = _org_out(session, actor, org)
    session.commit()
    return out


@router.get(
    "/orgs/{name}", response_model=OrgOut, summary="Show an organisation", responses=errors(404)
)
def get_org(name: OrgName, session: SessionDep, actor: OptionalUser) -> OrgOut:
    """Public facts about an organisation; the member list only for members and admins."""
    return _org_out(session, actor, accounts.get_org(session, name))


@router.post(
    "/orgs/{name}/members",
    response_model=MemberOut,
    summary="Add a member or change their role (organisation admins)",
    responses=errors(403, 404, 409),
)
def add_member(
    name: OrgName, body: MemberAdd, session: SessionDep, actor: CurrentUser
) -> MemberOut:
    """Add a user to an organisation with a role (read, write, admin), or change their role.
    Needs the organisation's admin role and an admin-scoped token; 409 when it would demote
    the last admin.
    """
    membership = accounts.add_member(session, actor, name, body.user, body.role)
    out = MemberOut.model_validate({"user": body.user, "role": membership.role})
    session.commit()
    return out


@router.delete(
    "/orgs/{name}/members/{user}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Remove a member",
    responses=errors(403, 404, 409),
)
def remove_member(
    name: OrgName, user: UserName, session: SessionDep, actor: CurrentUser
) -> Response:
    """Remove a member. Organisation admins may remove anyone; any member may remove
    themselves. 409 for the last admin.
    """
    accounts.remove_member(session, actor, name, user)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/tokens",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenCreated,
    summary="Create a token for the caller (the value is shown once)",
    responses=errors(403),
)
def create_token(body: TokenCreate, session: SessionDep, actor: CurrentUser) -> TokenCreated:
    """Create a token for the caller, at most as powerful as the token used (scope read, write
    or admin; optional expiry). The value is in the answer once and never again.
    """
    token, value = accounts.create_token(
        session,
        actor,
        body.name,
        scope=body.scope,
        expires_in_days=body.expires_in_days,
        expires_at=as_utc(body.expires_at, "expires_at"),
    )
    session.commit()
    return _token_created(token, value)


@router.get(
    "/tokens",
    response_model=TokenList,
    summary="List the caller's tokens",
    dependencies=[Depends(flush_token_uses)],
)
def list_tokens(session: SessionDep, actor: CurrentUser) -> TokenList:
    """The caller's tokens (never their values): name, scope, prefix, expiry, last use."""
    return TokenList(
        tokens=[TokenOut.model_validate(t) for t in accounts.list_tokens(session, actor)]
    )


@router.delete(
    "/tokens/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Revoke a token",
    responses=errors(403, 404),
)
def revoke_token(token_id: TokenId, session: SessionDep, actor: CurrentUser) -> Response:
    """Revoke one of the caller's tokens (site administrators: anyone's). It stops working at
    once.
    """
    accounts.revoke_token(session, actor, token_id)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/whoami", response_model=WhoAmI, summary="Who the token belongs to")
def whoami(session: SessionDep, actor: CurrentUser) -> WhoAmI:
    """The user behind the token, the token's scope and id, and the caller's organisations with
    their roles.
    """
    return WhoAmI.model_validate(
        {
            "user": actor.username,
            "is_admin": actor.is_admin,
            "namespace": actor.username,
            "scope": actor.scope,
            "token_id": actor.token_id,
            "orgs": [{"name": n, "role": r} for n, r in accounts.memberships_of(session, actor)],
        }
    )
