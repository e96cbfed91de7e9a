"""Invoices, their lines, and the gapless number series approved invoices draw from."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, Exact, JSONType, UTCDateTime


class InvoiceStatus(StrEnum):
    draft = "draft"
    approved = "approved"
    sent = "sent"
    paid = "paid"
    void = "void"


class InvoiceKind(StrEnum):
    invoice = "invoice"
    credit_note = "credit_note"


class InvoiceNumberSeries(Base):
    """A gapless counter. Approval locks the row, takes `next_number` and increments it in the
    same transaction, so numbers are never skipped or reused."""

    __tablename__ = "invoice_number_series"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(32))
    next_number: Mapped[int] = mapped_column(default=1)


class Invoice(Base):
    __tablename__ = "invoice"
    __table_args__ = (
        UniqueConstraint("series", "number"),
        Index(None, "community_id", "period_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[str] = mapped_column(ForeignKey("community.id"))
    kind: Mapped[str] = mapped_column(String(16), default=InvoiceKind.invoice)
    status: Mapped[str] = mapped_column(String(16), default=InvoiceStatus.draft)
    period_start: Mapped[date] = mapped_column(Date())
    period_end: Mapped[date] = mapped_column(Date())
    series: Mapped[str | None] = mapped_column(ForeignKey("invoice_number_series.name"))
    number: Mapped[int | None] = mapped_column()
    number_display: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[Decimal] = mapped_column(Exact())
    total: Mapped[Decimal] = mapped_column(Exact())
    attribution_run_id: Mapped[int | None] = mapped_column(ForeignKey("attribution_run.id"))
    credit_note_for_id: Mapped[int | None] = mapped_column(ForeignKey("invoice.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    approved_by: Mapped[str | None] = mapped_column(String(200))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    void_reason: Mapped[str | None] = mapped_column(Text)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.position", cascade="all, delete-orphan"
    )


class InvoiceLine(Base):
    __tablename__ = "invoice_line"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoice.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column()
    kind: Mapped[str] = mapped_column(String(16))
    hub_id: Mapped[int | None] = mapped_column(ForeignKey("hub.id"))
    component: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text)
    quantity: Mapped[Decimal | None] = mapped_column(Exact())
    unit: Mapped[str | None] = mapped_column(String(32))
    amount: Mapped[Decimal] = mapped_column(Exact())

    invoice: Mapped[Invoice] = relationship(back_populates="lines")
