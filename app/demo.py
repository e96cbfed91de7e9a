"""`hubmeter demo`: the whole flow on embedded defaults, on one machine.

Generate a month of a synthetic cluster's usage and its cloud bill, migrate a SQLite database,
ingest usage (from the OpenMetrics export) and costs (from the GCP billing export file),
attribute the month, create API tokens, and serve. Every step is the same job the scheduler
runs, so running the demo again replaces its data rather than adding to it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from app import migrate
from app.attribution.rules import Period
from app.auth import service as token_service
from app.auth.models import ApiToken, Role
from app.clock import utcnow
from app.config import Settings
from app.costs import ingest as cost_ingest
from app.costs.service import ImportReport
from app.db import transaction
from app.hubs import service as hub_service
from app.periods import Window, days_in_month
from app.runtime import Runtime
from app.synthetic import Manifest, ScenarioSpec, generate, read_manifest
from app.usage.service import SourceKind
from jobs import attribute as attribute_job
from jobs import ingest_usage as usage_job
from jobs.runner import run_job

DEMO_CREATOR = "hubmeter demo"

Say = Callable[[str], None]


@dataclass
class DemoResult:
    runtime: Runtime
    manifest: Manifest
    period: Period
    tokens: dict[str, str] = field(default_factory=dict)


def scenario_for(month_start: dt.date, *, hubs: int, users_per_hub: int, seed: int) -> ScenarioSpec:
    return ScenarioSpec(
        hubs=hubs,
        users_per_hub=users_per_hub,
        days=days_in_month(month_start),
        start=month_start,
        seed=seed,
    )


def run_demo(
    *,
    directory: Path,
    spec: ScenarioSpec,
    say: Say,
    base_settings: Settings,
) -> DemoResult:
    """Run every step of the demo; returns what `serve` needs."""
    directory.mkdir(parents=True, exist_ok=True)
    data_dir = directory / "data"
    manifest = _generated(spec, data_dir, say)
    settings = base_settings.model_copy(
        update={
            "database_url": f"sqlite:///{(directory / 'hubmeter.db').resolve()}",
            "config": manifest.config_file,
        }
    )
    runtime = Runtime(settings=settings, config_path=manifest.config_file)

    say(f"database: {settings.database_url}")
    migrate.upgrade(runtime.engine)
    with transaction(runtime.session_factory) as session:
        hub_service.sync_from_config(session=session, config=runtime.config, now=utcnow())

    for outcome in usage_job.ingest_usage(runtime, source=SourceKind.openmetrics):
        if outcome.error is not None:
            raise outcome.error
        if outcome.report is not None:
            figures = outcome.report.figures()
            say(f"usage: cluster {outcome.cluster}: {figures.get('rows')} hourly rows ingested")

    now = utcnow()
    report = run_job(
        runtime,
        "ingest_costs",
        lambda session: cost_ingest.ingest_gcp_export_files(
            session=session,
            paths=[manifest.billing_export_file],
            now=now,
            window=Window(manifest.period_start, manifest.period_end),
        ),
        figures=ImportReport.figures,
    )
    say(f"costs: {report.rows_written} cost lines from {manifest.billing_export_file.name}")

    period = Period(spec.start, spec.start + dt.timedelta(days=spec.days))
    run = attribute_job.attribute(runtime, period=period)
    say(
        f"attribution: {run.cost_total} {run.currency} billed = {run.allocated_total} to hubs"
        f" + {run.unattributed_total} unattributed"
        f" ({'every day adds up exactly' if run.balanced else 'DOES NOT ADD UP'})"
    )

    result = DemoResult(runtime=runtime, manifest=manifest, period=period)
    with transaction(runtime.session_factory) as session:
        # A demo run's tokens replace the previous run's: revoke those still live.
        earlier = session.scalars(
            select(ApiToken.id).where(
                ApiToken.created_by == DEMO_CREATOR, ApiToken.revoked_at.is_(None)
            )
        ).all()
        for token_id in earlier:
            token_service.revoke_token(
                session=session, token_id=token_id, now=utcnow(), actor=DEMO_CREATOR
            )
        expires = utcnow() + dt.timedelta(days=30)
        _, result.tokens["finance"] = token_service.create_token(
            session=session,
            name="demo finance",
            role=Role.finance,
            community_id=None,
            created_by=DEMO_CREATOR,
            now=utcnow(),
            expires_at=expires,
        )
        for community in runtime.config.communities:
            _, result.tokens[community.id] = token_service.create_token(
                session=session,
                name=f"demo viewer for {community.id}",
                role=Role.viewer,
                community_id=community.id,
                created_by=DEMO_CREATOR,
                now=utcnow(),
                expires_at=expires,
            )
    return result


def _generated(spec: ScenarioSpec, data_dir: Path, say: Say) -> Manifest:
    """The scenario's files, generated once and reused while the spec is the same."""
    if (data_dir / "manifest.json").exists():
        manifest = read_manifest(data_dir)
        if manifest.spec == spec:
            say(f"data: reusing {data_dir}")
            return manifest
    say(
        f"data: generating {spec.hubs} hubs x {spec.users_per_hub} users, {spec.days} days "
        f"from {spec.start} into {data_dir}"
    )
    return generate(spec, data_dir)
