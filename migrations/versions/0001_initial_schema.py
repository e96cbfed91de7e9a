"""Initial schema: tenants, usage, cost lines, attribution, invoices, audit, tokens, job runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 06:10:08.141229
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "attribution_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period_start", app.db.UTCDateTime(), nullable=False),
        sa.Column("period_end", app.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("policy", app.db.JSONType, nullable=False),
        sa.Column("inputs_sha256", sa.String(length=64), nullable=False),
        sa.Column("previous_run_id", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("cost_total", app.db.Exact(), nullable=False),
        sa.Column("allocated_total", app.db.Exact(), nullable=False),
        sa.Column("unattributed_total", app.db.Exact(), nullable=False),
        sa.Column("estimated_total", app.db.Exact(), nullable=False),
        sa.Column("summary", app.db.JSONType, nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["previous_run_id"],
            ["attribution_run.id"],
            name=op.f("fk_attribution_run_previous_run_id_attribution_run"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attribution_run")),
    )
    with op.batch_alter_table("attribution_run", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_attribution_run_period_start_period_end"),
            ["period_start", "period_end"],
            unique=False,
        )

    op.create_table(
        "cluster",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cluster")),
    )
    op.create_table(
        "community",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("billing_email", sa.String(length=320), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("plan", sa.String(length=63), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community")),
    )
    op.create_table(
        "ingestion_batch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("window_start", app.db.UTCDateTime(), nullable=False),
        sa.Column("window_end", app.db.UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("finished_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("rows_superseded", sa.Integer(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=True),
        sa.Column("superseded_by_id", sa.Integer(), nullable=True),
        sa.Column("stats", app.db.JSONType, nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingestion_batch")),
    )
    with op.batch_alter_table("ingestion_batch", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ingestion_batch_kind_source_window_start"),
            ["kind", "source", "window_start"],
            unique=False,
        )

    op.create_table(
        "invoice_number_series",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("next_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_invoice_number_series")),
    )
    op.create_table(
        "job_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_name", sa.String(length=100), nullable=False),
        sa.Column("started_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("finished_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("window_start", app.db.UTCDateTime(), nullable=True),
        sa.Column("window_end", app.db.UTCDateTime(), nullable=True),
        sa.Column("detail", app.db.JSONType, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_run")),
    )
    with op.batch_alter_table("job_run", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_job_run_job_name_started_at"), ["job_name", "started_at"], unique=False
        )

    op.create_table(
        "watermark",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("through", app.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "source", name=op.f("pk_watermark")),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("display_prefix", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("community_id", sa.String(length=63), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("expires_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("last_used_at", app.db.UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "role != 'viewer' OR community_id IS NOT NULL",
            name=op.f("ck_api_token_viewer_has_community"),
        ),
        sa.ForeignKeyConstraint(
            ["community_id"], ["community.id"], name=op.f("fk_api_token_community_id_community")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_api_token_token_sha256")),
    )
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_api_token_community_id"), ["community_id"], unique=False
        )

    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity_type", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("community_id", sa.String(length=63), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", app.db.JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["community_id"], ["community.id"], name=op.f("fk_audit_event_community_id_community")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_event_community_id"), ["community_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_event_entity_type_entity_id"),
            ["entity_type", "entity_id"],
            unique=False,
        )

    op.create_table(
        "cost_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("source_row", sa.String(length=300), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("billing_account_id", sa.String(length=200), nullable=True),
        sa.Column("sub_account_id", sa.String(length=200), nullable=True),
        sa.Column("sub_account_name", sa.String(length=300), nullable=True),
        sa.Column("service_name", sa.String(length=300), nullable=True),
        sa.Column("service_category", sa.String(length=64), nullable=True),
        sa.Column("sku_id", sa.String(length=200), nullable=True),
        sa.Column("sku_description", sa.Text(), nullable=True),
        sa.Column("resource_id", sa.Text(), nullable=True),
        sa.Column("resource_name", sa.Text(), nullable=True),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("charge_period_start", app.db.UTCDateTime(), nullable=False),
        sa.Column("charge_period_end", app.db.UTCDateTime(), nullable=False),
        sa.Column("charge_category", sa.String(length=16), nullable=False),
        sa.Column("is_correction", sa.Boolean(), nullable=False),
        sa.Column("billed_cost", app.db.Exact(), nullable=False),
        sa.Column("effective_cost", app.db.Exact(), nullable=True),
        sa.Column("list_cost", app.db.Exact(), nullable=True),
        sa.Column("credits", app.db.Exact(), nullable=False),
        sa.Column("net_cost", app.db.Exact(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("consumed_quantity", app.db.Exact(), nullable=True),
        sa.Column("consumed_unit", sa.String(length=64), nullable=True),
        sa.Column("component", sa.String(length=32), nullable=False),
        sa.Column("labels", app.db.JSONType, nullable=False),
        sa.Column("exported_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("extra", app.db.JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["ingestion_batch.id"], name=op.f("fk_cost_line_batch_id_ingestion_batch")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cost_line")),
    )
    with op.batch_alter_table("cost_line", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cost_line_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_cost_line_charge_period_start"), ["charge_period_start"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_cost_line_source_charge_period_start"),
            ["source", "charge_period_start"],
            unique=False,
        )

    op.create_table(
        "hub",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster_name", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("community_id", sa.String(length=63), nullable=False),
        sa.Column("monthly_budget", app.db.Exact(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_name"], ["cluster.name"], name=op.f("fk_hub_cluster_name_cluster")
        ),
        sa.ForeignKeyConstraint(
            ["community_id"], ["community.id"], name=op.f("fk_hub_community_id_community")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hub")),
        sa.UniqueConstraint("cluster_name", "name", name=op.f("uq_hub_cluster_name_name")),
        sa.UniqueConstraint(
            "cluster_name", "namespace", name=op.f("uq_hub_cluster_name_namespace")
        ),
    )
    with op.batch_alter_table("hub", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hub_community_id"), ["community_id"], unique=False)

    op.create_table(
        "invoice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("series", sa.String(length=63), nullable=True),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("number_display", sa.String(length=64), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("subtotal", app.db.Exact(), nullable=False),
        sa.Column("total", app.db.Exact(), nullable=False),
        sa.Column("attribution_run_id", sa.Integer(), nullable=True),
        sa.Column("credit_note_for_id", sa.Integer(), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("approved_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("sent_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("paid_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("voided_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.Column("stripe_invoice_id", sa.String(length=200), nullable=True),
        sa.Column("details", app.db.JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["attribution_run_id"],
            ["attribution_run.id"],
            name=op.f("fk_invoice_attribution_run_id_attribution_run"),
        ),
        sa.ForeignKeyConstraint(
            ["community_id"], ["community.id"], name=op.f("fk_invoice_community_id_community")
        ),
        sa.ForeignKeyConstraint(
            ["credit_note_for_id"],
            ["invoice.id"],
            name=op.f("fk_invoice_credit_note_for_id_invoice"),
        ),
        sa.ForeignKeyConstraint(
            ["series"],
            ["invoice_number_series.name"],
            name=op.f("fk_invoice_series_invoice_number_series"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice")),
        sa.UniqueConstraint("series", "number", name=op.f("uq_invoice_series_number")),
        sa.UniqueConstraint("stripe_invoice_id", name=op.f("uq_invoice_stripe_invoice_id")),
    )
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_invoice_community_id_period_start"),
            ["community_id", "period_start"],
            unique=False,
        )

    op.create_table(
        "hub_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hub_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=512), nullable=False),
        sa.Column("first_seen_at", app.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hub_id"], ["hub.id"], name=op.f("fk_hub_user_hub_id_hub"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hub_user")),
        sa.UniqueConstraint("hub_id", "username", name=op.f("uq_hub_user_hub_id_username")),
    )
    op.create_table(
        "invoice_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("hub_id", sa.Integer(), nullable=True),
        sa.Column("component", sa.String(length=32), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quantity", app.db.Exact(), nullable=True),
        sa.Column("unit", sa.String(length=32), nullable=True),
        sa.Column("amount", app.db.Exact(), nullable=False),
        sa.ForeignKeyConstraint(["hub_id"], ["hub.id"], name=op.f("fk_invoice_line_hub_id_hub")),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoice.id"],
            name=op.f("fk_invoice_line_invoice_id_invoice"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_line")),
    )
    with op.batch_alter_table("invoice_line", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_invoice_line_invoice_id"), ["invoice_id"], unique=False
        )

    op.create_table(
        "attribution_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["attribution_run.id"],
            name=op.f("fk_attribution_day_run_id_attribution_run"),
        ),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_attribution_day")),
    )
    with op.batch_alter_table("attribution_day", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attribution_day_run_id"), ["run_id"], unique=False)

    op.create_table(
        "allocation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("cluster_name", sa.String(length=63), nullable=True),
        sa.Column("community_id", sa.String(length=63), nullable=True),
        sa.Column("hub_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("component", sa.String(length=32), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("amount", app.db.Exact(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("basis", app.db.JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["community_id"], ["community.id"], name=op.f("fk_allocation_community_id_community")
        ),
        sa.ForeignKeyConstraint(["hub_id"], ["hub.id"], name=op.f("fk_allocation_hub_id_hub")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["attribution_run.id"],
            name=op.f("fk_allocation_run_id_attribution_run"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["hub_user.id"], name=op.f("fk_allocation_user_id_hub_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocation")),
    )
    with op.batch_alter_table("allocation", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_allocation_run_id_community_id_day"),
            ["run_id", "community_id", "day"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_allocation_run_id_day"), ["run_id", "day"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_allocation_run_id_hub_id_day"), ["run_id", "hub_id", "day"], unique=False
        )

    op.create_table(
        "usage_hour",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("cluster_name", sa.String(length=63), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("hub_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("hour", app.db.UTCDateTime(), nullable=False),
        sa.Column("server_seconds", app.db.Exact(), nullable=False),
        sa.Column("memory_request_byte_seconds", app.db.Exact(), nullable=False),
        sa.Column("cpu_request_core_seconds", app.db.Exact(), nullable=False),
        sa.Column("memory_usage_byte_seconds", app.db.Exact(), nullable=False),
        sa.Column("cpu_usage_core_seconds", app.db.Exact(), nullable=False),
        sa.Column("gpu_request_seconds", app.db.Exact(), nullable=False),
        sa.Column("home_storage_byte_seconds", app.db.Exact(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["ingestion_batch.id"],
            name=op.f("fk_usage_hour_batch_id_ingestion_batch"),
        ),
        sa.ForeignKeyConstraint(
            ["cluster_name"], ["cluster.name"], name=op.f("fk_usage_hour_cluster_name_cluster")
        ),
        sa.ForeignKeyConstraint(["hub_id"], ["hub.id"], name=op.f("fk_usage_hour_hub_id_hub")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["hub_user.id"], name=op.f("fk_usage_hour_user_id_hub_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_hour")),
        sa.UniqueConstraint(
            "hub_id", "hour", "user_id", name=op.f("uq_usage_hour_hub_id_hour_user_id")
        ),
    )
    with op.batch_alter_table("usage_hour", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_usage_hour_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_usage_hour_cluster_name_hour"), ["cluster_name", "hour"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_usage_hour_user_id_hour"), ["user_id", "hour"], unique=False
        )

    # The audit log is append-only: on PostgreSQL the database itself refuses to change history.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_event_is_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            """
            CREATE TRIGGER audit_event_append_only
            BEFORE UPDATE OR DELETE ON audit_event
            FOR EACH ROW EXECUTE FUNCTION audit_event_is_append_only()
            """
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event")
        op.execute("DROP FUNCTION IF EXISTS audit_event_is_append_only()")

    with op.batch_alter_table("usage_hour", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_hour_user_id_hour"))
        batch_op.drop_index(batch_op.f("ix_usage_hour_cluster_name_hour"))
        batch_op.drop_index(batch_op.f("ix_usage_hour_batch_id"))

    op.drop_table("usage_hour")
    with op.batch_alter_table("allocation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_allocation_run_id_hub_id_day"))
        batch_op.drop_index(batch_op.f("ix_allocation_run_id_day"))
        batch_op.drop_index(batch_op.f("ix_allocation_run_id_community_id_day"))

    op.drop_table("allocation")
    with op.batch_alter_table("attribution_day", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attribution_day_run_id"))

    op.drop_table("attribution_day")
    with op.batch_alter_table("invoice_line", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoice_line_invoice_id"))

    op.drop_table("invoice_line")
    op.drop_table("hub_user")
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoice_community_id_period_start"))

    op.drop_table("invoice")
    with op.batch_alter_table("hub", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hub_community_id"))

    op.drop_table("hub")
    with op.batch_alter_table("cost_line", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cost_line_source_charge_period_start"))
        batch_op.drop_index(batch_op.f("ix_cost_line_charge_period_start"))
        batch_op.drop_index(batch_op.f("ix_cost_line_batch_id"))

    op.drop_table("cost_line")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_entity_type_entity_id"))
        batch_op.drop_index(batch_op.f("ix_audit_event_community_id"))

    op.drop_table("audit_event")
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_token_community_id"))

    op.drop_table("api_token")
    op.drop_table("watermark")
    with op.batch_alter_table("job_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_run_job_name_started_at"))

    op.drop_table("job_run")
    op.drop_table("invoice_number_series")
    with op.batch_alter_table("ingestion_batch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingestion_batch_kind_source_window_start"))

    op.drop_table("ingestion_batch")
    op.drop_table("community")
    op.drop_table("cluster")
    with op.batch_alter_table("attribution_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attribution_run_period_start_period_end"))

    op.drop_table("attribution_run")
