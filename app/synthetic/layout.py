"""Where each file goes inside the output directory."""

from __future__ import annotations

CONFIG_FILE = "hubmeter.yaml"
BILLING_EXPORT_FILE = "gcp-billing-export.jsonl"
FOCUS_FILE = "focus.csv"
USAGE_TRUTH_FILE = "truth/usage_hourly.csv"
COST_TRUTH_FILE = "truth/costs_daily.csv"
MANIFEST_FILE = "manifest.json"


def openmetrics_file(cluster: str) -> str:
    return f"usage-{cluster}.om"
