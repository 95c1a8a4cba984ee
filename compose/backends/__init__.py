"""How a lab's hosts are made: ``base`` (the interface), one module per backend, and
``registry`` (the only place a backend is chosen by name). Kept import-free: the node
image carries this package for the swarm agent."""
