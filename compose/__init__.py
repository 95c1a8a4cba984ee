"""Backends that realise a lab plan, and the runner that drives its timeline."""
