"""Synthetic truths: stores drawn from known curves, the calibration of the verdict, and the power analysis."""
