"""Active learning: which unlabelled structures to send to DFT next (pure functions on arrays)."""
