"""Measurement: reading a store, W50 and w* per cell with their seed-bootstrap intervals, comparing two stores."""
