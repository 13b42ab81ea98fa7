"""Table models, pandera frame models and platform column maps: one source of names and types."""
