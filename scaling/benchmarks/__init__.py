"""Measurements of the engine, apart from the library: `make bench` (benchmarks.bench: one workload timed seven
ways) and `make profile` (scaling.benchmarks.profile: where a training step's time goes, and the cost model's error).
They use the public names of scaling only."""
