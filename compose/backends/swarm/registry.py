"""The node image where every engine can pull it: engines cannot share a local image.

Built on this machine's engine (DOCKER_HOST's by default: for a real cluster, the
manager itself), loaded into the manager if that is another engine, tagged with the
registry's name and pushed from the manager.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from p2plab.compose.backends.base import BackendError
from p2plab.compose.images import IMAGE_REPO, ensure_image
from p2plab.compose.impls.builds import Built


def publish_image(manager: Any, registry: str, log: Callable[[str], None],
                  builds: Sequence[Built] = ()) -> str:
    """The image's name in the registry, after making sure it is there."""
    import docker

    builder = docker.from_env(timeout=300)
    tag = ensure_image(builds, log, client=builder)
    repo = f"{registry}/{IMAGE_REPO}"
    version = tag.split(":", 1)[1]
    remote = f"{repo}:{version}"
    try:
        manager.images.get(tag)
    except docker.errors.ImageNotFound:
        log(f"copying {tag} to the manager")
        # docker save | docker load, streamed (a chunked upload)
        manager.images.load(builder.images.get(tag).save(named=True))
    manager.images.get(tag).tag(repo, version)
    log(f"pushing {remote}")
    for line in manager.images.push(repo, version, stream=True, decode=True):
        if "error" in line:
            raise BackendError(f"pushing {remote} to the registry failed: {line['error']} "
                               "(is the registry reachable from the manager and trusted "
                               "by every engine? see docs/guide/run-on-a-cluster.md)")
    return remote
