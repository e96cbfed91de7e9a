"""Allocation pools: the cost each allocation was split from, for provenance.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Expand only: a new table and a nullable column, safe while the previous version runs.
    op.create_table(
        "allocation_pool",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("cluster_name", sa.String(length=63), nullable=True),
        sa.Column("hub_id", sa.Integer(), nullable=True),
        sa.Column("how", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("component", sa.String(length=32), nullable=False),
        sa.Column("driver", sa.String(length=32), nullable=False),
        sa.Column("estimated", sa.Boolean(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("net_cost", app.db.Exact(), nullable=False),
        sa.Column("cost_line_count", sa.Integer(), nullable=False),
        sa.Column("first_cost_line_id", sa.Integer(), nullable=True),
        sa.Column("last_cost_line_id", sa.Integer(), nullable=True),
        sa.Column("charge_periods", sa.Integer(), nullable=False),
        sa.Column("driver_units", app.db.Exact(), nullable=False),
        sa.Column("capacity_units", app.db.Exact(), nullable=True),
        sa.ForeignKeyConstraint(["hub_id"], ["hub.id"], name=op.f("fk_allocation_pool_hub_id_hub")),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["attribution_run.id"],
            name=op.f("fk_allocation_pool_run_id_attribution_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allocation_pool")),
    )
    with op.batch_alter_table("allocation_pool", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_allocation_pool_run_id_day"), ["run_id", "day"], unique=False
        )
    with op.batch_alter_table("allocation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pool_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("allocation", schema=None) as batch_op:
        batch_op.drop_column("pool_id")
    with op.batch_alter_table("allocation_pool", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_allocation_pool_run_id_day"))
    op.drop_table("allocation_pool")
