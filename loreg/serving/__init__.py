"""Integrations that serve adapters from loreg (docs/serving.md)."""
