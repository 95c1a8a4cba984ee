"""Metrics, expectations and reports, computed from event logs only."""
