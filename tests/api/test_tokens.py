"""Tokens from the command line and the API: shown once, stored as a hash, with expiry and
revocation; and identities vouched for by a trusted proxy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from typer.testing import CliRunner

import app.models as models
from app import cli as app_cli
from app import migrate
from app.auth import service as token_service
from app.auth.models import ApiToken, Role
from app.cli import cli
from app.config import Settings
from app.db import make_sessionmaker, transaction
from app.errors import UsageError
from app.runtime import Runtime
from tests.api.conftest import NOW, Client, World, make_app


@pytest.fixture
def database(fresh_engine: Engine) -> Iterator[Engine]:
    """A migrated database with two communities and nothing else."""
    migrate.upgrade(fresh_engine)
    with Session(fresh_engine) as session:
        for cid in ("ocean-lab", "climate-school"):
            session.add(
                models.Community(
                    id=cid,
                    name=cid.title(),
                    billing_email=f"b@{cid}.org",
                    currency="USD",
                    plan="p",
                    updated_at=NOW,
                )
            )
        session.commit()
    return fresh_engine


def hubmeter(engine: Engine, *args: str) -> tuple[int, str, BaseException | None]:
    """Run a `hubmeter` command on `engine` (the test's, so its connections are closed)."""
    url = engine.url.render_as_string(hide_password=False)

    def runtime_on_engine(settings: Settings, config_path: object = None) -> Runtime:
        return Runtime(settings=settings, config_path=config_path, _engine=engine)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_cli, "Runtime", runtime_on_engine)
        result = CliRunner().invoke(cli, ["--database-url", url, *args])
    return result.exit_code, result.output, result.exception


def bearer(app: object, token: str) -> TestClient:
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})  # type: ignore[arg-type]


def test_a_token_from_the_cli_is_shown_once_works_and_can_be_revoked(database: Engine) -> None:
    code, output, _ = hubmeter(
        database, "tokens", "create", "--role", "viewer", "--community", "ocean-lab"
    )
    assert code == 0, output
    token = next(line for line in output.splitlines() if line.startswith("hm_"))
    with Session(database) as session:
        row = session.scalars(select(ApiToken)).one()
        stored = session.execute(text("SELECT * FROM api_token")).one()
    # Only the hash is stored: the token appears in no column.
    assert token not in [str(value) for value in stored]
    assert row.token_sha256 == token_service.hash_token(token)
    assert row.expires_at is not None
    assert timedelta(days=89) < row.expires_at - datetime.now(UTC) <= timedelta(days=90)

    application = make_app(database)
    me = bearer(application, token).get("/api/v1/me").json()
    assert (me["role"], me["community_id"], me["token_id"]) == ("viewer", "ocean-lab", row.id)

    code, output, _ = hubmeter(database, "tokens", "list", "--format", "json")
    (listed,) = json.loads(output)
    assert listed["id"] == row.id
    assert listed["status"] == "active"
    assert token not in output
    assert row.token_sha256 not in output
    assert listed["prefix"] == token[:10]

    code, output, _ = hubmeter(database, "tokens", "revoke", str(row.id))
    assert code == 0
    assert f"revoked token {row.id}" in output
    response = bearer(application, token).get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["detail"] == "the token is unknown, revoked or expired"
    code, output, _ = hubmeter(database, "tokens", "revoke", str(row.id))
    assert "already revoked" in output
    code, output, _ = hubmeter(database, "tokens", "list", "--format", "json")
    assert json.loads(output) == []  # only tokens in use, unless --all
    code, output, _ = hubmeter(database, "tokens", "list", "--all", "--format", "csv")
    assert output.splitlines()[1].split(",")[6] == "revoked"
    with Session(database) as session:
        actions = session.scalars(
            select(models.AuditEvent.action).order_by(models.AuditEvent.id)
        ).all()
    assert actions == ["token.create", "token.revoke"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "viewer"], "a viewer token belongs to one community"),
        (["--role", "finance", "--community", "ocean-lab"], "reads every community"),
        (["--role", "viewer", "--community", "atlantis"], "no community 'atlantis'"),
        (["--role", "admin", "--expires-in", "soon"], "expected a duration such as 90d"),
        (["--role", "admin", "--expires-in", "0d"], "must be in the future"),
    ],
)
def test_the_cli_says_what_to_change(world: World, args: list[str], message: str) -> None:
    def count() -> int:
        with Session(world.engine) as session:
            return len(session.scalars(select(ApiToken.id)).all())

    before = count()
    _code, _, exception = hubmeter(world.engine, "tokens", "create", *args)
    assert isinstance(exception, UsageError)
    assert message in str(exception)
    assert count() == before


def test_json_output_for_scripts_and_tokens_that_never_expire(database: Engine) -> None:
    _code, output, _ = hubmeter(
        database, "tokens", "create", "--role", "finance", "--expires-in", "never",
        "--name", "accounting export", "--format", "json",
    )  # fmt: skip
    created = json.loads(output)
    assert created["expires_at"] is None
    assert created["name"] == "accounting export"
    me = bearer(make_app(database), created["token"]).get("/api/v1/me").json()
    assert me["role"] == "finance"
    assert me["community_id"] is None


def test_admins_manage_tokens_through_the_api(world: World, client_as: Client) -> None:
    admin = client_as("admin")
    created = admin.post(
        "/api/v1/tokens",
        json={"name": "dashboard", "role": "viewer", "community_id": "climate-school"},
    )
    assert created.status_code == 201
    body = created.json()
    token = body["token"]
    assert token.startswith("hm_")
    assert body["status"] == "active"
    listed = admin.get("/api/v1/tokens", params={"community_id": "climate-school"}).json()
    entry = next(t for t in listed["tokens"] if t["id"] == body["id"])
    assert "token" not in entry
    assert entry["display_prefix"] == token[:10]
    assert token not in json.dumps(listed)

    dashboard = TestClient(admin.app, headers={"Authorization": f"Bearer {token}"})
    assert dashboard.get("/api/v1/communities").json()["communities"][0]["id"] == ("climate-school")
    revoked = admin.post(f"/api/v1/tokens/{body['id']}/revoke")
    assert revoked.json()["status"] == "revoked"
    assert dashboard.get("/api/v1/communities").status_code == 401

    # The admin's own token cannot revoke itself: the last admin cannot lock everyone out.
    own = admin.post(f"/api/v1/tokens/{world.token_ids['admin']}/revoke")
    assert own.status_code == 409
    assert admin.get("/api/v1/me").status_code == 200

    bad = admin.post("/api/v1/tokens", json={"name": "x", "role": "viewer"})
    assert bad.status_code == 422
    assert "belongs to one community" in bad.json()["detail"]


def test_use_is_recorded_once_a_minute(database: Engine) -> None:
    factory = make_sessionmaker(database)
    with transaction(factory) as session:
        row, _ = token_service.create_token(
            session=session,
            name="dashboard",
            role=Role.viewer,
            community_id="ocean-lab",
            created_by="test",
            now=NOW - timedelta(days=1),
        )
        session.flush()
        token_id = row.id

    def last_used() -> datetime | None:
        with factory() as session:
            return session.get_one(ApiToken, token_id).last_used_at

    for now, expected in (
        (NOW, NOW),
        (NOW + timedelta(seconds=59), NOW),
        (NOW + timedelta(seconds=60), NOW + timedelta(seconds=60)),
    ):
        with factory() as session:
            row = session.get_one(ApiToken, token_id)
            if token_service.use_is_due(row=row, now=now):
                token_service.record_use(session_factory=factory, token_id=token_id, now=now)
        assert last_used() == expected


def test_a_trusted_proxy_identity_gets_its_grant(database: Engine) -> None:
    code, output, _ = hubmeter(
        database, "tokens", "create", "--role", "viewer", "--community", "ocean-lab",
        "--identity", "Alice@Ocean-Lab.org",
    )  # fmt: skip
    assert code == 0, output
    assert "hm_" not in output  # an identity grant has no secret to show
    header = "X-Forwarded-Email"
    proxied = make_app(database, Settings(trusted_identity_header=header))

    client = TestClient(proxied)
    me = client.get("/api/v1/me", headers={header: "alice@ocean-lab.org"}).json()
    assert (me["subject"], me["role"], me["community_id"]) == (
        "identity:alice@ocean-lab.org",
        "viewer",
        "ocean-lab",
    )
    assert client.get("/api/v1/communities/climate-school", headers={header: "alice@ocean-lab.org"}).status_code == 404  # fmt: skip  # noqa: E501
    stranger = client.get("/api/v1/me", headers={header: "mallory@example.org"})
    assert stranger.status_code == 403
    assert "no live hubmeter access" in stranger.json()["detail"]
    assert client.get("/api/v1/me").status_code == 401
    # A client's own copy of the header, which a proxy appended to instead of replacing, does
    # not speak for it: two copies are refused.
    doubled = client.get(
        "/api/v1/me",
        headers=[(header, "alice@ocean-lab.org"), (header, "mallory@example.org")],
    )
    assert doubled.status_code == 401
    assert "more than once" in doubled.json()["detail"]

    # Off by default: without the setting the header means nothing.
    plain = TestClient(make_app(database))
    assert plain.get("/api/v1/me", headers={header: "alice@ocean-lab.org"}).status_code == 401

    # A bearer token, when sent, decides.
    code, output, _ = hubmeter(
        database, "tokens", "create", "--role", "finance", "--format", "json"
    )
    finance = json.loads(output)["token"]
    me = client.get(
        "/api/v1/me",
        headers={header: "alice@ocean-lab.org", "Authorization": f"Bearer {finance}"},
    ).json()
    assert me["role"] == "finance"

    # One live grant per identity; revoking it ends the access, and a new one can follow.
    code, _, exception = hubmeter(
        database, "tokens", "create", "--role", "admin", "--identity", "alice@ocean-lab.org"
    )
    assert isinstance(exception, UsageError)
    assert "already has live grant" in str(exception)
    with Session(database) as session:
        grant = session.scalars(select(ApiToken).where(ApiToken.identity.is_not(None))).one()
    hubmeter(database, "tokens", "revoke", str(grant.id))
    assert client.get("/api/v1/me", headers={header: "alice@ocean-lab.org"}).status_code == 403
    code, output, _ = hubmeter(
        database, "tokens", "create", "--role", "finance", "--identity", "alice@ocean-lab.org"
    )
    assert code == 0, output
    me = client.get("/api/v1/me", headers={header: "ALICE@ocean-lab.org"}).json()
    assert me["role"] == "finance"


def test_a_revocation_is_only_answered_once_it_is_stored(world: World) -> None:
    """The request's commit comes before its answer: a revocation the database refuses is an
    error to the admin, not a 200 "revoked" for a token that still works."""
    app = make_app(world.engine)
    real_factory = app.state.session_factory
    failing = {"commit": False}

    def factory() -> Session:
        session: Session = real_factory()
        commit = session.commit

        def refusing_commit() -> None:
            if failing["commit"]:
                raise OperationalError("COMMIT", {}, Exception("database is locked"))
            commit()

        session.commit = refusing_commit  # type: ignore[method-assign]
        return session

    app.state.session_factory = factory
    admin = TestClient(
        app,
        headers={"Authorization": f"Bearer {world.tokens['admin']}"},
        raise_server_exceptions=False,
    )
    created = admin.post(
        "/api/v1/tokens", json={"name": "kept", "role": "viewer", "community_id": "ocean-lab"}
    ).json()
    viewer = TestClient(app, headers={"Authorization": f"Bearer {created['token']}"})
    assert viewer.get("/api/v1/me").status_code == 200

    failing["commit"] = True
    refused = admin.post(f"/api/v1/tokens/{created['id']}/revoke")
    failing["commit"] = False
    assert refused.status_code >= 500
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert viewer.get("/api/v1/me").status_code == 200  # not revoked, and not said to be

    assert admin.post(f"/api/v1/tokens/{created['id']}/revoke").json()["status"] == "revoked"
    assert viewer.get("/api/v1/me").status_code == 401
