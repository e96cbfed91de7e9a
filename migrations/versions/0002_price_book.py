"""The price book: list prices from the Cloud Billing Catalog, for estimates.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "price_book_sku",
        sa.Column("sku_id", sa.String(length=64), nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("service_name", sa.String(length=300), nullable=False),
        sa.Column("sku_description", sa.Text(), nullable=False),
        sa.Column("resource_family", sa.String(length=64), nullable=True),
        sa.Column("resource_group", sa.String(length=64), nullable=True),
        sa.Column("usage_type", sa.String(length=64), nullable=True),
        sa.Column("regions", app.db.JSONType, nullable=False),
        sa.Column("usage_unit", sa.String(length=64), nullable=False),
        sa.Column("usage_unit_description", sa.String(length=200), nullable=True),
        sa.Column("base_unit", sa.String(length=64), nullable=False),
        sa.Column("base_unit_conversion_factor", app.db.Exact(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("unit_price", app.db.Exact(), nullable=False),
        sa.Column("tiers", app.db.JSONType, nullable=False),
        sa.Column("effective_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("fetched_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sku_id", name=op.f("pk_price_book_sku")),
    )
    with op.batch_alter_table("price_book_sku", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_price_book_sku_service_id"), ["service_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("price_book_sku", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_price_book_sku_service_id"))
    op.drop_table("price_book_sku")
