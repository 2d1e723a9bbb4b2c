"""Experiment files: the schema, the typed Config, and command-line overrides."""
