"""Hourly usage per hub and user, metered from each cluster's Prometheus."""
