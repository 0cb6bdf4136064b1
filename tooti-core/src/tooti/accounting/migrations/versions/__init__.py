"""Migration scripts, one per schema version, in order (``down_revision`` chains them)."""
