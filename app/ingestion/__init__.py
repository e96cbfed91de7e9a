"""Ingestion batches and watermarks shared by usage and cost ingestion."""
