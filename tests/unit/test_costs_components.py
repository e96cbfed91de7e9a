"""Every cost line lands in one component of the fixed vocabulary, by a readable rule table."""

from __future__ import annotations

import pytest

from app.costs.components import component_for, gcp_service_category
from app.costs.models import Component
from app.synthetic import catalog as synthetic_catalog

CASES = [
    # (FOCUS category, service, SKU / charge description, charge category, component)
    (None, "Compute Engine", "N2 Instance Core running in Americas", "usage", Component.compute),
    (None, "Compute Engine", "Nvidia Tesla T4 GPU running in Americas", "usage", Component.compute),
    (None, "Compute Engine", "Storage PD Capacity", "usage", Component.core),
    (None, "Compute Engine", "Network Inter Zone Egress", "usage", Component.networking),
    (None, "Kubernetes Engine", "Zonal Kubernetes Clusters", "usage", Component.core),
    (None, "Kubernetes Engine", "Autopilot Pod Memory Requests", "usage", Component.compute),
    (None, "Cloud Filestore", "Filestore Basic HDD Capacity", "usage", Component.home_storage),
    (None, "Cloud Storage", "Standard Storage US Multi-region", "usage", Component.object_storage),
    (None, "Cloud Storage", "Download Worldwide Destinations", "usage", Component.networking),
    (
        None,
        "Networking",
        "Network Internet Egress from Americas to Americas",
        "usage",
        Component.networking,
    ),
    (None, "Support", "Enhanced Support", "usage", Component.support),
    (None, "Cloud Logging", "Log Volume", "usage", Component.core),
    (None, "BigQuery", "Analysis", "usage", Component.other),
    (None, "Cloud Run", "CPU Allocation Time", "usage", Component.other),
    ("Compute", "AWS Lambda", "Lambda GB-Second", "usage", Component.other),
    (None, "Compute Engine", "Sales tax", "tax", Component.other),
    (
        "Compute",
        "Amazon Elastic Compute Cloud",
        "$0.0464 per On Demand Linux t3.medium",
        "usage",
        Component.compute,
    ),
    (
        "Compute",
        "Amazon Elastic Compute Cloud",
        "$0.08 per GB-month of gp3 provisioned storage - EBS:VolumeUsage.gp3",
        "usage",
        Component.core,
    ),
    (
        "Compute",
        "Amazon Elastic Compute Cloud",
        "$0.00 per GB - US West data transfer",
        "usage",
        Component.networking,
    ),
    (
        "Storage",
        "Amazon Elastic File System",
        "$0.30 per GB-Mo for Standard storage",
        "usage",
        Component.home_storage,
    ),
    (
        "Storage",
        "Amazon Simple Storage Service",
        "$0.023 per GB - first 50 TB",
        "usage",
        Component.object_storage,
    ),
    (
        "Compute",
        "Amazon Elastic Container Service for Kubernetes",
        "$0.10 per hour per cluster",
        "usage",
        Component.core,
    ),
    (
        "Management and Governance",
        "AmazonCloudWatch",
        "$0.30 per metric-month",
        "usage",
        Component.core,
    ),
    (
        "Integration",
        "Amazon Simple Queue Service",
        "$0.40 per million requests",
        "usage",
        Component.other,
    ),
    ("Other", "AWS Support (Business)", "Business support", "usage", Component.support),
    ("Compute", "Virtual Machines", "D4s v5", "usage", Component.compute),
    ("Storage", "Storage Accounts", "Files v2 - LRS Data Stored", "usage", Component.home_storage),
    ("Storage", "Storage Accounts", "Hot LRS Data Stored", "usage", Component.object_storage),
    ("Compute", "Azure Kubernetes Service", "Standard Uptime SLA", "usage", Component.core),
    ("Storage", "BLOCK_STORAGE", "Block Volume - Storage", "usage", Component.core),
    ("Networking", "NETWORK", "Outbound Data Transfer", "usage", Component.networking),
    ("Databases", "Amazon Relational Database Service", "db.t3.micro", "usage", Component.other),
    (None, None, None, "credit", Component.other),
]


@pytest.mark.parametrize(("category", "service", "sku", "charge_category", "expected"), CASES)
def test_component_rules(
    category: str | None,
    service: str | None,
    sku: str | None,
    charge_category: str,
    expected: Component,
) -> None:
    got = component_for(
        service_category=category,
        service_name=service,
        sku_description=sku,
        charge_category=charge_category,
    )
    assert got is expected


def _synthetic_skus() -> list[synthetic_catalog.Sku]:
    return [v for v in vars(synthetic_catalog).values() if isinstance(v, synthetic_catalog.Sku)] + [
        sku for pair in synthetic_catalog.INSTANCE_SKUS.values() for sku in pair
    ]


@pytest.mark.parametrize("sku", _synthetic_skus(), ids=lambda s: s.description)
def test_every_sku_of_the_synthetic_bill_maps_to_the_component_its_truth_names(
    sku: synthetic_catalog.Sku,
) -> None:
    category = gcp_service_category(sku.service.description)
    assert category == sku.service.focus_category
    got = component_for(
        service_category=category,
        service_name=sku.service.description,
        sku_description=sku.description,
        charge_category="usage",
    )
    assert got.value == sku.component.value
