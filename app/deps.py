"""Request dependencies shared by every router."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.config import HubmeterConfig, Settings


def get_session(request: Request) -> Iterator[Session]:
    """A session per request; it commits at the end if nothing raised. That end comes after
    the response has been sent, so a route that writes commits itself before answering (a
    client told "revoked" or "created" can count on it, and a failed commit is the answer,
    not a log line after it). Reads have nothing to commit, and answer sooner this way."""
    session: Session = request.app.state.session_factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_config(request: Request) -> HubmeterConfig | None:
    config: HubmeterConfig | None = request.app.state.config
    return config


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ConfigDep = Annotated[HubmeterConfig | None, Depends(get_config)]
