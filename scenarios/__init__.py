"""The shipped scenarios, installed as package data (``p2plab run nat-relay`` finds them here)."""
