"""The same charges as a FOCUS 1.0 CSV, the way a FOCUS view of the GCP export shows them.

Credits become rows of their own (ChargeCategory Credit, negative BilledCost), so the BilledCost of
a day, project and SKU adds up to the export's cost plus credits.
"""

from __future__ import annotations

import json
from decimal import Decimal

from app.synthetic.bill import BILLING_ACCOUNT_ID, BILLING_ACCOUNT_NAME
from app.synthetic.catalog import Component
from app.synthetic.charges import Charge, CostType, Credit
from app.synthetic.decimals import in_pricing_units, plain
from app.synthetic.timefmt import iso_utc, month_start, next_month_start
from app.synthetic.units import SECONDS_PER_HOUR

FOCUS_COLUMNS = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
    "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory",
    "CommitmentDiscountId", "CommitmentDiscountName", "CommitmentDiscountStatus",
    "CommitmentDiscountType", "ConsumedQuantity", "ConsumedUnit", "ContractedCost",
    "ContractedUnitPrice", "EffectiveCost", "InvoiceIssuerName", "ListCost", "ListUnitPrice",
    "PricingCategory", "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName",
    "RegionId", "RegionName", "ResourceId", "ResourceName", "ResourceType", "ServiceCategory",
    "ServiceName", "SkuId", "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
)  # fmt: skip

_REGION_NAMES = {"us-central1": "Iowa"}
_CHARGE_CATEGORY = {
    CostType.regular: "Usage",
    CostType.tax: "Tax",
    CostType.adjustment: "Adjustment",
}


def focus_rows(charge: Charge) -> list[list[str]]:
    """The charge's row, then one row per credit. Empty strings are FOCUS nulls."""
    rows = [_row(charge, None)]
    rows.extend(_row(charge, credit) for credit in charge.credits)
    return rows


def _row(charge: Charge, credit: Credit | None) -> list[str]:
    sku = charge.sku
    is_usage = credit is None and charge.cost_type is CostType.regular
    amount: Decimal = charge.cost if credit is None else credit.amount
    location, resource, project = charge.location, charge.resource, charge.project
    billed = plain(amount)
    if credit is not None:
        category, description, frequency = "Credit", credit.full_name, "Usage-Based"
    else:
        category, description = _CHARGE_CATEGORY[charge.cost_type], sku.description
        frequency = "Usage-Based" if is_usage else "One-Time"
        if sku.component is Component.support and is_usage:
            frequency = "Recurring"
    values = {
        "AvailabilityZone": location.zone if location and location.zone else "",
        "BilledCost": billed,
        "BillingAccountId": BILLING_ACCOUNT_ID,
        "BillingAccountName": BILLING_ACCOUNT_NAME,
        "BillingCurrency": "USD",
        "BillingPeriodEnd": iso_utc(next_month_start(charge.hour_start)),
        "BillingPeriodStart": iso_utc(month_start(charge.hour_start)),
        "ChargeCategory": category,
        "ChargeClass": "",
        "ChargeDescription": description,
        "ChargeFrequency": frequency,
        "ChargePeriodEnd": iso_utc(charge.hour_start + SECONDS_PER_HOUR),
        "ChargePeriodStart": iso_utc(charge.hour_start),
        # No committed use discounts on this account.
        "CommitmentDiscountCategory": "",
        "CommitmentDiscountId": "",
        "CommitmentDiscountName": "",
        "CommitmentDiscountStatus": "",
        "CommitmentDiscountType": "",
        "ConsumedQuantity": plain(charge.usage_amount) if is_usage else "",
        "ConsumedUnit": sku.usage_unit if is_usage else "",
        "ContractedCost": billed,
        "ContractedUnitPrice": plain(sku.list_price) if is_usage else "",
        "EffectiveCost": billed,
        "InvoiceIssuerName": "Google Cloud",
        "ListCost": billed,
        "ListUnitPrice": plain(sku.list_price) if is_usage else "",
        "PricingCategory": "Standard" if is_usage else "",
        "PricingQuantity": plain(
            in_pricing_units(charge.usage_amount, sku.usage_units_per_pricing_unit)
        )
        if is_usage
        else "",
        "PricingUnit": sku.pricing_unit if is_usage else "",
        "ProviderName": "Google Cloud",
        "PublisherName": "Google Cloud",
        "RegionId": location.region if location and location.region else "",
        "RegionName": _REGION_NAMES.get(location.region or "", "") if location else "",
        "ResourceId": resource.global_name if resource else "",
        "ResourceName": resource.name if resource else "",
        "ResourceType": resource.focus_type if resource else "",
        "ServiceCategory": sku.service.focus_category,
        "ServiceName": sku.service.description,
        "SkuId": sku.id,
        "SkuPriceId": f"{sku.id}-list",
        "SubAccountId": project.id if project else "",
        "SubAccountName": project.id if project else "",
        "Tags": json.dumps(dict(charge.labels), ensure_ascii=False) if charge.labels else "",
    }
    return [values[column] for column in FOCUS_COLUMNS]
