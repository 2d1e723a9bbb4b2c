"""The results directory: the SQLite store (one writer), its schema and readers, outputs, the lock."""
