"""Lookups the other domains make of hubs and communities, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from app.hubs import service as hub_service
from app.hubs.models import Community

NOW = datetime(2026, 10, 1, tzinfo=UTC)


def test_community_names_by_id(session: Session) -> None:
    for community_id, name in (("ocean-lab", "Ocean Lab"), ("climate-school", "Climate School")):
        session.add(
            Community(
                id=community_id,
                name=name,
                billing_email=f"billing@{community_id}.org",
                currency="USD",
                plan="standard",
                updated_at=NOW,
            )
        )
    session.flush()
    assert hub_service.community_names(session=session) == {
        "ocean-lab": "Ocean Lab",
        "climate-school": "Climate School",
    }
    # Only those asked for; ids repeated or unknown are harmless, and none asks for none.
    wanted = ["ocean-lab", "ocean-lab", "gone"]
    assert hub_service.community_names(session=session, community_ids=wanted) == {
        "ocean-lab": "Ocean Lab"
    }
    assert hub_service.community_names(session=session, community_ids=[]) == {}
