"""Spaces: what one is (spec), the named ones (registry), where weights come from (weights), tower
families (towers), and the runtime space built from them (runtime)."""
