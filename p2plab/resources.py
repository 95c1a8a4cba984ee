"""Where p2plab's files are, the same in a checkout and in an installed wheel: package
data is found through the import system, caches live under the user's cache folder."""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path


def package_dir(name: str) -> Path:
    """The folder of an installed subpackage (``p2plab.scenarios``), without importing it."""
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"p2plab is installed without {name}: reinstall it (pip install .)")
    return Path(next(iter(spec.submodule_search_locations)))


def scenarios_dir() -> Path:
    """The shipped scenarios."""
    return package_dir("p2plab.scenarios")


def image_dir() -> Path:
    """The node/router image's Dockerfile and router script."""
    return package_dir("p2plab.compose") / "image"


def rust_crate_dir() -> Path:
    """The Rust node's crate (Cargo.toml, Cargo.lock, src/)."""
    return package_dir("p2plab.node_rust")


def cache_dir() -> Path:
    """Built things reused across runs and checkouts (wheels for the image, cargo's
    target): ``P2PLAB_CACHE``, default ``~/.cache/p2plab``."""
    default = Path.home() / ".cache" / "p2plab"
    return Path(os.environ.get("P2PLAB_CACHE", default))
