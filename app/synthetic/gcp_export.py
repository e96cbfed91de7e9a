"""The GCP billing export as `bq extract --destination_format NEWLINE_DELIMITED_JSON` writes it."""

from __future__ import annotations

import json
from typing import Any

from app.synthetic.bill import BILLING_ACCOUNT_ID
from app.synthetic.charges import Charge, Labels
from app.synthetic.decimals import in_pricing_units, json_number
from app.synthetic.timefmt import bigquery_timestamp, invoice_month
from app.synthetic.units import SECONDS_PER_HOUR


def export_line(charge: Charge) -> str:
    """One JSON object on one line, keys in the export's column order."""
    return json.dumps(_export_row(charge), ensure_ascii=False, separators=(",", ":")) + "\n"


def _key_values(labels: Labels) -> list[dict[str, str]]:
    return [{"key": key, "value": value} for key, value in labels]


def _export_row(charge: Charge) -> dict[str, Any]:
    sku = charge.sku
    project = charge.project
    location = charge.location
    resource = charge.resource
    adjustment = charge.adjustment
    return {
        "billing_account_id": BILLING_ACCOUNT_ID,
        "service": {"id": sku.service.id, "description": sku.service.description},
        "sku": {"id": sku.id, "description": sku.description},
        "usage_start_time": bigquery_timestamp(charge.hour_start),
        "usage_end_time": bigquery_timestamp(charge.hour_start + SECONDS_PER_HOUR),
        "project": None
        if project is None
        else {
            "id": project.id,
            "number": project.number,
            "name": project.id,
            "labels": _key_values(project.labels),
            "ancestry_numbers": project.ancestry_numbers,
        },
        "labels": _key_values(charge.labels),
        "system_labels": _key_values(charge.system_labels),
        "location": None
        if location is None
        else {
            "location": location.location,
            "country": location.country,
            "region": location.region,
            "zone": location.zone,
        },
        "resource": None
        if resource is None
        else {"name": resource.name, "global_name": resource.global_name},
        "export_time": bigquery_timestamp(charge.export_time, charge.export_microseconds),
        "cost": json_number(charge.cost),
        "currency": "USD",
        "currency_conversion_rate": 1.0,
        # BigQuery keeps usage as FLOAT64 too; only cost and credits must read back exactly.
        "usage": {
            "amount": float(charge.usage_amount),
            "unit": sku.usage_unit,
            "amount_in_pricing_units": float(
                in_pricing_units(charge.usage_amount, sku.usage_units_per_pricing_unit)
            ),
            "pricing_unit": sku.pricing_unit,
        },
        "credits": [
            {
                "name": credit.name,
                "amount": json_number(credit.amount),
                "full_name": credit.full_name,
                "id": credit.id,
                "type": credit.type,
            }
            for credit in charge.credits
        ],
        "invoice": {"month": invoice_month(charge.hour_start)},
        "cost_type": charge.cost_type.value,
        "adjustment_info": None
        if adjustment is None
        else {
            "id": adjustment.id,
            "description": adjustment.description,
            "mode": adjustment.mode,
            "type": adjustment.type,
        },
    }
