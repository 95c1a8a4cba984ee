"""The executors of a plan: ``lab/`` (one lab's lifecycle over a backend), ``backends/``
(netns, Docker, swarm: how hosts are made), ``sim/`` (the simulator)."""
