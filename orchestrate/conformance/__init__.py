"""The node contract as checks users run on their implementation (``p2plab conform``)."""
