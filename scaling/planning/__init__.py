"""Search and planning: which members to train next, measured rates (stats), buckets, the cost model."""
