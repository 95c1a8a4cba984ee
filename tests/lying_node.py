"""The py node, except that ``--version`` names a library release it is not on: a node
that breaks one clause of the contract, for the conformance checker's own test."""

import sys

if __name__ == "__main__":
    if "--version" in sys.argv[1:]:
        print("p2plab-node 0 py-libp2p 0.0.1")
        sys.exit(0)
    from p2plab.node.__main__ import main

    sys.exit(main())
