"""The engine: tasks, networks, populations and their compiled programs (knows nothing of experiments)."""
