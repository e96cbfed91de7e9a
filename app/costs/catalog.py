"""List prices from the Cloud Billing Catalog (google-cloud-billing `CloudCatalogClient`).

`fetch_price_book` pages through a service's SKUs and turns each one's current pricing into a
price book entry: the unit price of its first priced tier (as `units + nanos / 10^9`, exactly),
the usage unit it is sold in, and the factor to the base unit usage is metered in.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.costs.models import PriceBookSku
from app.costs.records import plain_decimal
from app.periods import as_utc

NANOS = Decimal(10) ** 9


def make_client(*, api_endpoint: str | None = None) -> Any:
    """A catalog client on the REST transport. With `api_endpoint` (a test server) it sends no
    credentials; otherwise Google's default credentials are used."""
    from google.cloud import billing_v1

    if api_endpoint:
        from google.auth.credentials import AnonymousCredentials

        return billing_v1.CloudCatalogClient(
            transport="rest",
            client_options={"api_endpoint": api_endpoint},
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
    return billing_v1.CloudCatalogClient(transport="rest")


def money(units: Any, nanos: Any) -> Decimal:
    """google.type.Money's `units` + `nanos` as one exact amount."""
    return Decimal(int(units or 0)) + Decimal(int(nanos or 0)) / NANOS


def find_services(client: Any, wanted: Iterable[str]) -> dict[str, tuple[str, str]]:
    """{wanted name or id: (service id, display name)} for every wanted service; unknown names
    raise LookupError listing what the catalog has that looks close."""
    wanted_list = list(wanted)
    by_name: dict[str, tuple[str, str]] = {}
    for service in client.list_services():
        pair = (service.service_id, service.display_name)
        by_name[service.service_id.lower()] = pair
        by_name[service.display_name.lower()] = pair
    found: dict[str, tuple[str, str]] = {}
    for name in wanted_list:
        match = by_name.get(name.lower())
        if match is None:
            close = sorted({p[1] for k, p in by_name.items() if name.lower()[:4] in k})[:8]
            hint = f"; close: {', '.join(close)}" if close else ""
            raise LookupError(f"the Cloud Billing Catalog has no service {name!r}{hint}")
        found[name] = match
    return found


def fetch_price_book(
    client: Any, *, service_id: str, service_name: str, currency: str, now: datetime
) -> list[PriceBookSku]:
    """The service's SKUs with their current list price in `currency`."""
    entries: list[PriceBookSku] = []
    for sku in client.list_skus(
        request={"parent": f"services/{service_id}", "currency_code": currency}
    ):
        entry = price_book_entry(sku, service_id=service_id, service_name=service_name, now=now)
        if entry is not None:
            entries.append(entry)
    return entries


def price_book_entry(
    sku: Any, *, service_id: str, service_name: str, now: datetime
) -> PriceBookSku | None:
    """A price book entry from a catalog SKU; None for a SKU without a priced tier."""
    if not sku.pricing_info:
        return None
    info = max(
        sku.pricing_info, key=lambda p: _time(p.effective_time) or datetime.min.replace(tzinfo=UTC)
    )
    expression = info.pricing_expression
    rates = list(expression.tiered_rates)
    if not rates:
        return None
    tiers = [
        {
            "start_usage_amount": format(
                plain_decimal(Decimal(repr(float(rate.start_usage_amount)))), "f"
            ),
            "unit_price": format(
                plain_decimal(money(rate.unit_price.units, rate.unit_price.nanos)), "f"
            ),
        }
        for rate in rates
    ]
    ordered = sorted(rates, key=lambda rate: float(rate.start_usage_amount))
    # A free first tier (a few GiB of disk, the first GiB of egress) is used up by any cluster;
    # the first priced tier is what its usage costs.
    priced = [r for r in ordered if money(r.unit_price.units, r.unit_price.nanos) > 0]
    first = priced[0] if priced else ordered[0]
    currency = first.unit_price.currency_code or "USD"
    # The factor is a double in the API; the real ones are whole numbers of base units, and the
    # shortest text of the double is the number Google means.
    factor = plain_decimal(Decimal(repr(float(expression.base_unit_conversion_factor))))
    category = sku.category
    return PriceBookSku(
        sku_id=sku.sku_id,
        service_id=service_id,
        service_name=service_name,
        sku_description=sku.description,
        resource_family=category.resource_family or None,
        resource_group=category.resource_group or None,
        usage_type=category.usage_type or None,
        regions=list(sku.service_regions),
        usage_unit=expression.usage_unit,
        usage_unit_description=expression.usage_unit_description or None,
        base_unit=expression.base_unit,
        base_unit_conversion_factor=factor,
        currency=currency,
        unit_price=plain_decimal(money(first.unit_price.units, first.unit_price.nanos)),
        tiers=tiers,
        effective_at=_time(info.effective_time),
        fetched_at=now,
    )


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.year <= 1970 and value.timestamp() == 0:
            return None
        return as_utc(value)
    return None
