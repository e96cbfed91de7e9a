"""The `hubmeter` commands of this domain, registered on the root command by app.cli."""

from __future__ import annotations

import typer


def register(cli: typer.Typer, ingest: typer.Typer) -> None:
    """Add this domain's commands to the root command and the `ingest` group."""
