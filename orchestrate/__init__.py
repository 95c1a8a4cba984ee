"""Orchestration: above the executors and analysis; runs, suites, matrices, cross-checks."""
