"""Connectors: plain Python readers and writers behind a small interface. They never import dagster."""
