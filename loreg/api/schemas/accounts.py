"""Request and response bodies of the accounts endpoints (users, orgs, members, tokens)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from loreg.api.schemas.common import Name, Schema, Text

Scope = Literal["read", "write", "admin"]


class UserCreate(BaseModel):
    name: Name
    admin: bool = Field(default=False, description="Make the user a site administrator.")
    email: Text | None = Field(default=None, max_length=320)
    create_token: bool = Field(default=True, description="Also issue the user's first token.")
    token_scope: Scope = Field(
        default="admin",
        description="Scope of that first token: 'admin' lets the user manage their own "
        "organisations and mint narrower tokens for CI.",
    )


class UserOut(Schema):
    name: str
    is_admin: bool
    created_at: datetime


class UserListItem(UserOut):
    email: str | None = None
    disabled: bool = False


class UserList(BaseModel):
    users: list[UserListItem]
    next_cursor: str | None = Field(default=None, description="Pass as 'cursor' for the next page.")


class TokenOut(Schema):
    id: int
    name: str
    scope: Scope
    prefix: str = Field(description="The first characters of the token, to tell tokens apart.")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The token itself. Shown only once: store it now.")


class UserCreated(BaseModel):
    user: UserOut
    token: TokenCreated | None = None


class OrgCreate(BaseModel):
    name: Name
    description: Text = Field(default="", max_length=10_000)


class MemberOut(BaseModel):
    user: str
    role: Scope


class OrgOut(BaseModel):
    name: str
    description: str
    created_at: datetime
    members: list[MemberOut] | None = Field(
        default=None, description="Only for members and site administrators."
    )


class OrgSummary(BaseModel):
    name: str
    description: str
    created_at: datetime
    role: Scope | None = Field(description="The caller's role in it; null when not a member.")


class OrgList(BaseModel):
    orgs: list[OrgSummary]
    next_cursor: str | None = Field(default=None, description="Pass as 'cursor' for the next page.")


class MemberAdd(BaseModel):
    user: Name
    role: Scope = "read"


class TokenCreate(BaseModel):
    name: Name
    scope: Scope = "write"
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    expires_at: datetime | None = None


class TokenList(BaseModel):
    tokens: list[TokenOut]


class OrgMembership(BaseModel):
    name: str
    role: Scope


class WhoAmI(BaseModel):
    user: str
    is_admin: bool
    namespace: str
    scope: Scope
    token_id: int | None
    orgs: list[OrgMembership]
