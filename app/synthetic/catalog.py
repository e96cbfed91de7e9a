"""The services and SKUs of the synthetic bill, with list prices and hubmeter's component.

Descriptions, units and prices follow Google's price list for us-central1 closely enough to make
the numbers look familiar; the ids have Google's shape but are made up (derived from the name).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from app.synthetic.units import GIB, SECONDS_PER_HOUR, TIB

SECONDS_PER_PRICING_MONTH = 730 * SECONDS_PER_HOUR  # Google prices "per month" as 730 hours


class Component(StrEnum):
    compute = "compute"
    home_storage = "home_storage"
    object_storage = "object_storage"
    networking = "networking"
    core = "core"
    support = "support"
    other = "other"


def _google_style_id(name: str) -> str:
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=6).hexdigest().upper()
    return f"{digest[0:4]}-{digest[4:8]}-{digest[8:12]}"


@dataclass(frozen=True)
class Service:
    description: str
    focus_category: str  # FOCUS ServiceCategory

    @property
    def id(self) -> str:
        return _google_style_id(f"service:{self.description}")


@dataclass(frozen=True)
class Sku:
    service: Service
    description: str
    usage_unit: str
    pricing_unit: str
    usage_units_per_pricing_unit: Decimal
    list_price: Decimal  # per pricing unit, USD
    component: Component

    @property
    def id(self) -> str:
        return _google_style_id(f"sku:{self.service.description}:{self.description}")


COMPUTE_ENGINE = Service("Compute Engine", "Compute")
KUBERNETES_ENGINE = Service("Kubernetes Engine", "Compute")
FILESTORE = Service("Cloud Filestore", "Storage")
CLOUD_STORAGE = Service("Cloud Storage", "Storage")
NETWORKING = Service("Networking", "Networking")
CLOUD_RUN = Service("Cloud Run", "Compute")
BIGQUERY = Service("BigQuery", "Analytics")
SUPPORT = Service("Support", "Other")

_HOUR = Decimal(3600)
_GIB_HOUR = Decimal(3600 * GIB)
_GIB_MONTH = Decimal(SECONDS_PER_PRICING_MONTH * GIB)


def _instance_skus(core_name: str, ram_name: str) -> tuple[Sku, Sku]:
    return (
        Sku(
            COMPUTE_ENGINE,
            core_name,
            "seconds",
            "hour",
            _HOUR,
            Decimal("0.031611"),
            Component.compute,
        ),
        Sku(
            COMPUTE_ENGINE,
            ram_name,
            "byte-seconds",
            "gibibyte hour",
            _GIB_HOUR,
            Decimal("0.004237"),
            Component.compute,
        ),
    )


INSTANCE_SKUS = {
    "N2": _instance_skus(
        "N2 Instance Core running in Americas", "N2 Instance Ram running in Americas"
    ),
    "N1": _instance_skus(
        "N1 Predefined Instance Core running in Americas",
        "N1 Predefined Instance Ram running in Americas",
    ),
}
GPU_T4 = Sku(
    COMPUTE_ENGINE,
    "Nvidia Tesla T4 GPU running in Americas",
    "seconds",
    "hour",
    _HOUR,
    Decimal("0.35"),
    Component.compute,
)
FILESTORE_CAPACITY = Sku(
    FILESTORE,
    "Filestore Basic HDD Capacity",
    "byte-seconds",
    "gibibyte month",
    _GIB_MONTH,
    Decimal("0.16"),
    Component.home_storage,
)
ZONAL_CLUSTER_FEE = Sku(
    KUBERNETES_ENGINE,
    "Zonal Kubernetes Clusters",
    "seconds",
    "hour",
    _HOUR,
    Decimal("0.1"),
    Component.core,
)
REGIONAL_CLUSTER_FEE = Sku(
    KUBERNETES_ENGINE,
    "Regional Kubernetes Clusters",
    "seconds",
    "hour",
    _HOUR,
    Decimal("0.1"),
    Component.core,
)
PD_CAPACITY = Sku(
    COMPUTE_ENGINE,
    "Storage PD Capacity",
    "byte-seconds",
    "gibibyte month",
    _GIB_MONTH,
    Decimal("0.04"),
    Component.core,
)
EGRESS = Sku(
    NETWORKING,
    "Network Internet Egress from Americas to Americas",
    "bytes",
    "gibibyte",
    Decimal(GIB),
    Decimal("0.12"),
    Component.networking,
)
BUCKET_STORAGE = Sku(
    CLOUD_STORAGE,
    "Standard Storage US Multi-region",
    "byte-seconds",
    "gibibyte month",
    _GIB_MONTH,
    Decimal("0.026"),
    Component.object_storage,
)
CLOUD_RUN_CPU = Sku(
    CLOUD_RUN,
    "CPU Allocation Time",
    "seconds",
    "second",
    Decimal(1),
    Decimal("0.000024"),
    Component.other,
)
BIGQUERY_ANALYSIS = Sku(
    BIGQUERY, "Analysis", "bytes", "tebibyte", Decimal(TIB), Decimal("6.25"), Component.other
)
STANDARD_SUPPORT = Sku(
    SUPPORT, "Standard Support", "count", "count", Decimal(1), Decimal("29"), Component.support
)
