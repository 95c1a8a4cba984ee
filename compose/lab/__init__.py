"""One lab's life over a backend: ``lifecycle.Lab`` (plan, check, create, run, tear
down), the runner's parts (waits, services, probes), hosts, ownership and kept labs.
Kept import-free: the node image carries this package for the link stage."""
