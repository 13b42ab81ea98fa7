"""Table models, pandera frame models and platform column maps: the one source of names and types."""
