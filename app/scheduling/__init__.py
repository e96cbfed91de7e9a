"""Job runs and the embedded scheduler."""
