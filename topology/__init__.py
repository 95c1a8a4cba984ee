"""Scenario model, address plan, NAT rules and topology graph."""
