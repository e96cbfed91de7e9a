"""Every table, imported in one place so Alembic and the schema tests see the whole model."""

from app.attribution.models import Allocation, AllocationPool, AttributionDay, AttributionRun
from app.audit.models import AuditEvent
from app.auth.models import ApiToken
from app.costs.models import CostLine
from app.db import Base
from app.hubs.models import Cluster, Community, Hub, HubUser
from app.ingestion.models import IngestionBatch, Watermark
from app.invoices.models import Invoice, InvoiceLine, InvoiceNumberSeries
from app.scheduling.models import JobRun
from app.usage.models import UsageHour

__all__ = [
    "Allocation",
    "AllocationPool",
    "ApiToken",
    "AttributionDay",
    "AttributionRun",
    "AuditEvent",
    "Base",
    "Cluster",
    "Community",
    "CostLine",
    "Hub",
    "HubUser",
    "IngestionBatch",
    "Invoice",
    "InvoiceLine",
    "InvoiceNumberSeries",
    "JobRun",
    "UsageHour",
    "Watermark",
]
