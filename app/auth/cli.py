"""`hubmeter tokens create|list|revoke`: API tokens, shown once, stored as hashes."""

from __future__ import annotations

import getpass
import json
import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.auth import service as token_service
from app.auth.models import ApiToken, Role
from app.clock import utcnow
from app.db import transaction
from app.errors import UsageError
from app.runtime import runtime
from app.tables import write_csv

console = Console()
tokens_cli = typer.Typer(
    help="API tokens: create (shown once, stored only as a hash), list, revoke.",
    no_args_is_help=True,
)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def register(cli: typer.Typer, ingest: typer.Typer) -> None:
    """Add this domain's commands to the root command and the `ingest` group."""
    cli.add_typer(tokens_cli, name="tokens")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _describe(row: ApiToken) -> dict[str, object]:
    now = utcnow()
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "community_id": row.community_id,
        "prefix": row.display_prefix,
        "identity": row.identity,
        "status": token_service.token_status(row, now).value,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
    }


@tokens_cli.command("create")
def create(
    ctx: typer.Context,
    role: Annotated[Role, typer.Option(help="viewer (one community), finance or admin.")],
    community: Annotated[
        str | None, typer.Option(help="The community a viewer token reads (viewer only).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="What the token is for, shown in listings.")
    ] = None,
    expires_in: Annotated[str, typer.Option(help="Lifetime: 90d, 12h, 2w, 1y, or never.")] = "90d",
    identity: Annotated[
        str | None,
        typer.Option(
            help="Grant this identity (as the trusted proxy header names it) instead of "
            "issuing a bearer token."
        ),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table for people, json for scripts.")
    ] = OutputFormat.table,
) -> None:
    """Create an API token and show it once; or grant an identity with --identity."""
    rt = runtime(ctx)
    now = utcnow()
    label = name or (f"{role.value} for {community}" if community else f"{role.value} token")
    try:
        duration = token_service.parse_duration(expires_in)
        expires_at = now + duration if duration is not None else None
        with transaction(rt.session_factory) as session:
            if identity is not None:
                row = token_service.grant_identity(
                    session=session,
                    identity=identity,
                    name=label,
                    role=role,
                    community_id=community,
                    created_by=_actor(),
                    now=now,
                    expires_at=expires_at,
                )
                token = None
            else:
                row, token = token_service.create_token(
                    session=session,
                    name=label,
                    role=role,
                    community_id=community,
                    created_by=_actor(),
                    now=now,
                    expires_at=expires_at,
                )
            described = _describe(row)
    except token_service.TokenError as exc:
        raise UsageError(str(exc)) from None
    if output == OutputFormat.json:
        print(json.dumps({**described, "token": token}))
        return
    expiry = described["expires_at"] or "never"
    scope = f"community {community}" if community else "every community"
    if token is None:
        console.print(
            f"granted [bold]{row.identity}[/] the {role.value} role on {scope} "
            f"(grant {row.id}, expires {expiry}); they sign in through the proxy"
        )
        return
    console.print(f"token {row.id} ({role.value}, {scope}, expires {expiry}):")
    # The token alone on its own line, unstyled, so it can be copied or piped.
    print(token)
    console.print(
        "[yellow]It is shown this once and stored only as a hash: keep it somewhere safe.[/]"
    )


@tokens_cli.command("list")
def list_(
    ctx: typer.Context,
    community: Annotated[str | None, typer.Option(help="Only this community's tokens.")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Include expired and revoked tokens.")
    ] = False,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table, csv or json.")
    ] = OutputFormat.table,
) -> None:
    """List tokens, newest first (never their secrets)."""
    rt = runtime(ctx)
    with transaction(rt.session_factory) as session:
        rows = [
            _describe(row)
            for row in token_service.list_tokens(
                session=session, community_id=community, now=utcnow(), active_only=not all_
            )
        ]
    if output == OutputFormat.json:
        print(json.dumps(rows))
        return
    columns = ["id", "name", "role", "community_id", "prefix", "identity", "status"]
    columns += ["created_at", "expires_at", "last_used_at"]
    if output == OutputFormat.csv:
        write_csv(sys.stdout, columns, ([item[c] for c in columns] for item in rows))
        return
    if not rows:
        console.print("no tokens" + ("" if all_ else " in use (--all lists every token)"))
        return
    table = Table(*columns)
    for item in rows:
        table.add_row(*("" if item[c] is None else str(item[c]) for c in columns))
    console.print(table)


@tokens_cli.command("revoke")
def revoke(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(help="The token's id (see `hubmeter tokens list`).")],
) -> None:
    """Revoke a token or identity grant at once; it stays listed with --all."""
    rt = runtime(ctx)
    with transaction(rt.session_factory) as session:
        before = token_service.get_token(session=session, token_id=token_id)
        already = before is not None and before.revoked_at is not None
        row = token_service.revoke_token(
            session=session, token_id=token_id, now=utcnow(), actor=_actor()
        )
        if row is None:
            raise UsageError(f"no token {token_id}; `hubmeter tokens list --all` shows them")
        revoked_at = row.revoked_at
    assert revoked_at is not None
    if already:
        console.print(f"token {token_id} was already revoked at {revoked_at.isoformat()}")
    else:
        console.print(f"revoked token {token_id} ({row.name})")
