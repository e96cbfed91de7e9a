"""A Cloud Billing Catalog REST endpoint (v1) for the real `CloudCatalogClient(transport="rest")`.

Serves `services.list` and `services.skus.list` with paging (pageSize / pageToken), in the JSON
shape of the public API: SKUs with category, service regions and pricing info whose tiered rates
carry `google.type.Money` unit prices (`units` as a string, `nanos`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tests.fakes.http import Request, RequestLog, Response, serve


@dataclass(frozen=True)
class FakeSku:
    sku_id: str
    description: str
    usage_unit: str  # e.g. "h", "GiBy.h", "GiBy.mo"
    usage_unit_description: str
    base_unit: str  # e.g. "s", "By.s", "By"
    base_unit_conversion_factor: Decimal
    unit_price: Decimal  # per usage unit, USD
    resource_family: str = "Compute"
    resource_group: str = "CPU"
    usage_type: str = "OnDemand"
    regions: tuple[str, ...] = ("us-central1",)
    free_tier_up_to: Decimal | None = None  # a first tier at price 0, as storage SKUs have


@dataclass(frozen=True)
class FakeService:
    service_id: str
    display_name: str
    skus: tuple[FakeSku, ...]


def _money(amount: Decimal) -> dict[str, Any]:
    units = int(amount)
    nanos = int((amount - units) * 1_000_000_000)
    if Decimal(units) + Decimal(nanos) / 1_000_000_000 != amount:
        raise ValueError(f"{amount} does not fit google.type.Money's nanos")
    return {"currencyCode": "USD", "units": str(units), "nanos": nanos}


def sku_json(service: FakeService, sku: FakeSku) -> dict[str, Any]:
    rates = []
    if sku.free_tier_up_to is not None:
        rates.append({"startUsageAmount": 0, "unitPrice": _money(Decimal(0))})
        rates.append(
            {"startUsageAmount": float(sku.free_tier_up_to), "unitPrice": _money(sku.unit_price)}
        )
    else:
        rates.append({"startUsageAmount": 0, "unitPrice": _money(sku.unit_price)})
    return {
        "name": f"services/{service.service_id}/skus/{sku.sku_id}",
        "skuId": sku.sku_id,
        "description": sku.description,
        "category": {
            "serviceDisplayName": service.display_name,
            "resourceFamily": sku.resource_family,
            "resourceGroup": sku.resource_group,
            "usageType": sku.usage_type,
        },
        "serviceRegions": list(sku.regions),
        "pricingInfo": [
            {
                "summary": "",
                "pricingExpression": {
                    "usageUnit": sku.usage_unit,
                    "displayQuantity": 1,
                    "tieredRates": rates,
                    "usageUnitDescription": sku.usage_unit_description,
                    "baseUnit": sku.base_unit,
                    "baseUnitDescription": sku.base_unit,
                    "baseUnitConversionFactor": float(sku.base_unit_conversion_factor),
                },
                "currencyConversionRate": 1,
                "effectiveTime": "2026-09-30T12:00:00.000Z",
            }
        ],
        "serviceProviderName": "Google",
    }


@dataclass
class FakeCatalog:
    services: list[FakeService]
    page_size: int = 2
    log: RequestLog | None = None
    currencies: list[str] = field(default_factory=list)

    def handle(self, request: Request) -> Response:
        if request.method != "GET":
            return _error(405, f"{request.method} is not supported")
        size = min(int(request.query.get("pageSize") or self.page_size), self.page_size)
        start = int(request.query.get("pageToken") or 0)
        if request.path == "/v1/services":
            items = [
                {
                    "name": f"services/{s.service_id}",
                    "serviceId": s.service_id,
                    "displayName": s.display_name,
                    "businessEntityName": "businessEntities/GCP",
                }
                for s in self.services
            ]
            return Response(200, _page("services", items, start, size))
        match = re.fullmatch(r"/v1/services/([^/]+)/skus", request.path)
        if match:
            service = next((s for s in self.services if s.service_id == match.group(1)), None)
            if service is None:
                return _error(404, f"service {match.group(1)} not found")
            self.currencies.append(request.query.get("currencyCode", ""))
            items = [sku_json(service, sku) for sku in service.skus]
            return Response(200, _page("skus", items, start, size))
        return _error(404, f"no such endpoint {request.path}")


def _page(name: str, items: list[dict[str, Any]], start: int, size: int) -> dict[str, Any]:
    page: dict[str, Any] = {name: items[start : start + size]}
    if start + size < len(items):
        page["nextPageToken"] = str(start + size)
    return page


def _error(code: int, message: str) -> Response:
    return Response(code, {"error": {"code": code, "message": message, "status": "NOT_FOUND"}})


@contextmanager
def fake_catalog(fake: FakeCatalog) -> Iterator[str]:
    with serve(fake.handle) as (url, log):
        fake.log = log
        yield url
