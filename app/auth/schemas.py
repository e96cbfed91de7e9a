"""Tokens and the caller as the API shows them. Token hashes are never shown."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.auth.models import Role
from app.auth.service import TokenStatus
from app.config import SLUG
from app.costapi.schemas import Page

# Printable text without control characters (PostgreSQL refuses NUL in text).
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


class Me(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject": "token:7",
                    "role": "viewer",
                    "community_id": "ocean-lab",
                    "token_id": 7,
                    "token_name": "ocean dashboard",
                    "expires_at": "2027-01-29T10:00:00Z",
                }
            ]
        }
    )

    subject: str = Field(description="`token:<id>`, or `identity:<who>` behind a trusted proxy.")
    role: Role
    community_id: str | None = Field(description="The one community a viewer reads.")
    token_id: int | None
    token_name: str | None
    expires_at: datetime | None


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: Role
    community_id: str | None
    display_prefix: str = Field(
        description="The token's first characters (`identity` for identity grants)."
    )
    identity: str | None = Field(description="For identity grants: who the proxy vouches for.")
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="To the minute.")
    status: TokenStatus


class TokenCreated(TokenOut):
    token: str | None = Field(
        description="The bearer token, shown this once and never again (null for an identity "
        "grant, which has no secret)."
    )


class TokenList(BaseModel):
    tokens: list[TokenOut]
    page: Page


class TokenCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "ocean dashboard",
                    "role": "viewer",
                    "community_id": "ocean-lab",
                    "expires_in": "90d",
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200, pattern=PRINTABLE)
    role: Role
    community_id: str | None = Field(
        default=None,
        pattern=SLUG,
        max_length=63,
        description="Required for a viewer; not allowed for finance and admin.",
    )
    expires_in: str = Field(
        default="90d",
        pattern=r"^\s*([0-9]{1,5}\s*[hdwyHDWY]|[nN][eE][vV][eE][rR])\s*$",
        description="`90d`, `12h`, `2w`, `1y` or `never`.",
    )
    identity: str | None = Field(
        default=None,
        max_length=320,
        pattern=r"^[^\s\x00-\x1f\x7f]+$",
        description="Grant this proxy-vouched identity instead of issuing a bearer token.",
    )
