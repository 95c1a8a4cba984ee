"""Metrics, expectations and reports, computed from a results folder's own files (events,
manifest, scenario as run, topology); never from a plan or a backend."""
