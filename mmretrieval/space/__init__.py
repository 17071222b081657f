"""Spaces: what one is (spec), the named ones (registry), where weights come from (weights), the loaded towers (loader)."""
