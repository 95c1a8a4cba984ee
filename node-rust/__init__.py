"""The Rust node's sources, installed as package data so an installed p2plab can build it."""
