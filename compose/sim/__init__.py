"""The discrete-event simulator backend (``--backend sim``)."""
