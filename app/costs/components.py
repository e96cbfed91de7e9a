"""Which component a cost line is: one table of rules, read top to bottom, first match wins.

Inputs are what every bill has: the FOCUS ServiceCategory (empty for the GCP export, which has
none; `gcp_service_category` fills it for the services hubmeter knows), the service name (GCP
`service.description`, FOCUS ServiceName), the SKU description (GCP `sku.description`, FOCUS
ChargeDescription) and the charge category. Pure functions, no I/O.

Why the order matters: a SKU says more than its service (egress billed under Cloud Storage is
networking, a disk billed under Compute Engine is node infrastructure), and a service says more
than its FOCUS category (Filestore is "Storage" but holds home directories).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache

from app.costs.models import Component


@dataclass(frozen=True)
class Rule:
    component: Component
    why: str
    service: str | None = None  # regex on the service name
    sku: str | None = None  # regex on the SKU / charge description
    categories: frozenset[str] = frozenset()  # FOCUS ServiceCategory values, any of
    charge_categories: frozenset[str] = frozenset()  # hubmeter charge categories, any of

    def matches(self, category: str, service: str, sku: str, charge_category: str) -> bool:
        if self.charge_categories and charge_category not in self.charge_categories:
            return False
        if self.categories and category not in self.categories:
            return False
        if self.service is not None and not _regex(self.service).search(service):
            return False
        return self.sku is None or bool(_regex(self.sku).search(sku))


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_NETWORK_SKU = (
    r"egress|data transfer|bandwidth|\bnat\b|nat gateway|load ?balanc|inter[- ]?zone|"
    r"inter[- ]?region|\bnetwork\b|external ip|static ip|ipv4|ipv6|ip address|\bcdn\b|"
    r"^download |data processed"
)
_DISK_SKU = (
    r"\bPD\b|persistent disk|hyperdisk|local ssd|snapshot|image storage|\bEBS\b|"
    r"managed disks?|block volume|volume usage"
)

_FILE_SYSTEMS = r"filestore|elastic file system|\bEFS\b|netapp|\bFSx\b|file[ _]storage|azure files"
_BUCKETS = r"cloud storage|simple storage service|\bS3\b|object[ _]storage|storage accounts?|blob"
_CONTROL_PLANES = (
    r"kubernetes engine|kubernetes service|container service for kubernetes|\bEKS\b|\bAKS\b|"
    r"\bOKE\b|openshift"
)
_MACHINES = (
    r"compute engine|elastic compute cloud|\bEC2\b|virtual machines?|scale sets|^compute$|\bGPU\b"
)
_NETWORK_SERVICES = (
    r"^networking$|cloud nat|load balancing|cloud dns|\bCDN\b|virtual private cloud|\bVPC\b|"
    r"route 53|cloudfront|^network$|network intelligence"
)
_PLATFORM_SERVICES = (
    r"logging|monitoring|stackdriver|cloudwatch|cloudtrail|artifact registry|container registry|"
    r"\bECR\b|secret manager|key management|\bKMS\b|systems manager|security hub|\bWAF\b"
)
_PLATFORM_CATEGORIES = frozenset(
    {"Management and Governance", "Security", "Identity", "Developer Tools"}
)

RULES: tuple[Rule, ...] = (
    Rule(Component.other, "taxes follow the bill, not a resource",
         charge_categories=frozenset({"tax"})),
    Rule(Component.support, "support contracts", service=r"\bsupport\b"),
    Rule(Component.networking, "traffic, addresses and load balancing, whatever the service",
         sku=_NETWORK_SKU),
    Rule(Component.home_storage, "file systems hold users' home directories",
         service=_FILE_SYSTEMS),
    Rule(Component.home_storage, "Azure Files shares bill under Storage Accounts",
         service=r"^storage accounts?$", sku=r"\bfiles?\b"),
    Rule(Component.object_storage, "buckets", service=_BUCKETS),
    Rule(Component.core, "node disks and images are cluster infrastructure", sku=_DISK_SKU),
    Rule(Component.core, "block storage services",
         service=r"block[ _]storage|elastic block store"),
    Rule(Component.compute, "Autopilot bills pods under Kubernetes Engine",
         service=r"kubernetes engine", sku=r"autopilot"),
    Rule(Component.core, "the Kubernetes control plane fee", service=_CONTROL_PLANES),
    Rule(Component.compute, "virtual machines and accelerators", service=_MACHINES),
    Rule(Component.networking, "network services", service=_NETWORK_SERVICES),
    Rule(Component.core, "logging, monitoring, registries, secrets: what runs the cluster",
         service=_PLATFORM_SERVICES),
    Rule(Component.other, "serverless compute runs outside the clusters",
         service=r"cloud run|cloud functions|app engine|\blambda\b"),
    Rule(Component.compute, "FOCUS category Compute", categories=frozenset({"Compute"})),
    Rule(Component.object_storage, "FOCUS category Storage", categories=frozenset({"Storage"})),
    Rule(Component.networking, "FOCUS category Networking",
         categories=frozenset({"Networking"})),
    Rule(Component.core, "FOCUS categories that run the platform",
         categories=_PLATFORM_CATEGORIES),
)  # fmt: skip


def component_for(
    *,
    service_category: str | None,
    service_name: str | None,
    sku_description: str | None,
    charge_category: str,
) -> Component:
    """The component of a cost line; `other` when no rule matches."""
    return _component_for(
        service_category or "", service_name or "", sku_description or "", charge_category
    )


@lru_cache(maxsize=65536)
def _component_for(category: str, service: str, sku: str, charge_category: str) -> Component:
    for rule in RULES:
        if rule.matches(category, service, sku, charge_category):
            return rule.component
    return Component.other


# FOCUS ServiceCategory of the GCP services hubmeter meets on JupyterHub clusters (GCP's own FOCUS
# view uses the same values). The standard export has no category column.
_GCP_SERVICE_CATEGORIES = {
    "compute engine": "Compute",
    "kubernetes engine": "Compute",
    "cloud run": "Compute",
    "cloud functions": "Compute",
    "cloud filestore": "Storage",
    "filestore": "Storage",
    "cloud storage": "Storage",
    "networking": "Networking",
    "cloud nat": "Networking",
    "cloud dns": "Networking",
    "cloud load balancing": "Networking",
    "bigquery": "Analytics",
    "cloud sql": "Databases",
    "cloud logging": "Management and Governance",
    "cloud monitoring": "Management and Governance",
    "artifact registry": "Developer Tools",
    "container registry vulnerability scanning": "Developer Tools",
    "secret manager": "Security",
    "cloud key management service (kms)": "Security",
    "support": "Other",
}


def gcp_service_category(service_description: str | None) -> str | None:
    """The FOCUS ServiceCategory for a GCP `service.description`, if hubmeter knows it."""
    if service_description is None:
        return None
    return _GCP_SERVICE_CATEGORIES.get(service_description.strip().lower())
