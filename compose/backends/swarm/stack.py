"""Removing a run's stack from every engine of a swarm: at the end of a run, after an
interruption, and from ``p2plab clean`` (for runs whose owner is gone).

The manager removes services, networks and secrets; what sits on each engine (the lab's
containers, helpers, the run's volume) is removed by a one-shot global ``sweep`` service,
which reaches every engine without the runner needing their addresses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container
from typing import Any

from p2plab.compose.backends.base import PREFIX
from p2plab.compose.backends.containers import LABEL, RUN_LABEL
from p2plab.compose.backends.swarm import settings
from p2plab.compose.images import IMAGE_REPO

SWEEP_TIMEOUT_S = 60.0
# The agent's sweep, in the run's own image: images made before the backends moved into
# compose/backends/ have the agent at its old path.
SWEEP = ("python -m p2plab.compose.backends.swarm.agent --sweep {run} "
         "|| python -m p2plab.compose.swarm.agent --sweep {run}")


def remove_stack(manager: Any, run_id: str | None, image: str | None,
                 config: settings.SwarmSettings | None,
                 log: Callable[[str], None] = lambda m: None,
                 spare: Container[str] = frozenset()) -> list[str]:
    """Remove one run's stack (``run_id``) or every p2plab run's but ``spare``'s."""
    import docker
    from docker.types import Mount, RestartPolicy, ServiceMode

    selector = f"{RUN_LABEL}={run_id}" if run_id else RUN_LABEL

    def chosen(labels: dict[str, str] | None) -> bool:
        return (labels or {}).get(RUN_LABEL) not in spare

    removed: list[str] = []
    runs = set()
    for service in manager.services.list(filters={"label": selector}):
        labels = service.attrs["Spec"].get("Labels") or {}
        if chosen(labels):
            runs.add(labels[RUN_LABEL])
            # The agent's image runs the sweep: it is on every engine already.
            image = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] or image
            try:
                service.remove()
                removed.append(service.name)
            except docker.errors.NotFound:
                pass  # another cleaner (a concurrent `p2plab clean`) removed it first
    for network in manager.networks.list(filters={"label": selector}):
        runs.add((network.attrs.get("Labels") or {}).get(RUN_LABEL))
    # A run whose services and networks are gone can still have left a container or its
    # volume (a teardown cut short): found on the manager's engine, swept on every one.
    for leftover in [*manager.containers.list(all=True, filters={"label": selector}),
                     *manager.volumes.list(filters={"label": selector})]:
        runs.add((leftover.attrs.get("Labels") or {}).get(RUN_LABEL))
    runs.discard(None)
    runs = {r for r in runs if r not in spare}
    if runs and image and config is not None:
        for run in sorted(runs):
            name = f"{PREFIX}{run}-sweep"
            ours = True
            try:
                sweep = manager.services.create(
                    image, name=name, command=["sh", "-c", SWEEP.format(run=run)],
                    mode=ServiceMode("global"), networks=["host"],
                    labels={LABEL: "1", "p2plab.sweep": run},
                    mounts=[Mount("/var/run/docker.sock", config.engine_socket, type="bind")],
                    restart_policy=RestartPolicy(condition="none"))
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                # Another `p2plab clean` (two test lanes, two shells) is sweeping this
                # run right now: wait for its sweep instead of starting a second one.
                ours = False
                try:
                    sweep = manager.services.get(name)
                except docker.errors.NotFound:
                    continue  # and it has finished already
            deadline = time.monotonic() + SWEEP_TIMEOUT_S
            while time.monotonic() < deadline:
                if not manager.services.list(filters={"name": name}):
                    break  # the other cleaner removed it: the sweep is done
                try:
                    states = [t["Status"]["State"] for t in sweep.tasks()]
                except docker.errors.NotFound:
                    break
                nodes = len([n for n in manager.nodes.list()
                             if n.attrs["Status"]["State"] == "ready"])
                if len(states) >= nodes and all(s in ("complete", "failed", "rejected",
                                                      "shutdown") for s in states):
                    failed = [t for t in sweep.tasks()
                              if t["Status"]["State"] in ("failed", "rejected")]
                    for task in failed:
                        log(f"the sweep of run {run} failed on an engine: "
                            f"{task['Status'].get('Err') or task['Status']['State']}")
                    ours = ours and not failed
                    break
                time.sleep(0.5)
            else:
                log(f"the sweep of run {run} did not finish on every engine in "
                    f"{SWEEP_TIMEOUT_S:g} s")
            # Removed by whichever cleaner gets here first (a cleaner killed before its
            # remove would otherwise leave the service behind for good).
            try:
                sweep.remove()
            except docker.errors.NotFound:
                pass
            if ours:
                removed.append(f"containers and volumes of run {run} on every engine")
    for _attempt in range(20):
        left = [n for n in manager.networks.list(filters={"label": selector})
                if chosen(n.attrs.get("Labels"))]
        for network in left:
            try:
                network.remove()
                removed.append(network.name)
            except docker.errors.APIError:
                pass  # tasks still detaching: retried
        if not left:
            break
        time.sleep(0.5)
    for secret in manager.secrets.list(filters={"label": selector}):
        if chosen(secret.attrs["Spec"].get("Labels")):
            try:
                secret.remove()
                removed.append(secret.name)
            except docker.errors.NotFound:
                pass  # a concurrent cleaner's
    return removed


def remove_quietly(container: Any) -> None:
    try:
        container.remove(force=True, v=True)
    except Exception:  # gone already, or its engine unreachable: the sweep follows
        pass


def remove_swarm_certificates(spare: Container[str]) -> list[str]:
    """The TLS material of swarm runs whose owner is gone (a killed run keeps it)."""
    import shutil

    from p2plab.resources import cache_dir

    removed = []
    for folder in sorted((cache_dir() / "swarm-runs").glob("*")):
        if folder.is_dir() and folder.name not in spare:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(f"certificates of swarm run {folder.name}")
    return removed


def clean_swarm(spare: Container[str]) -> list[str]:
    """`p2plab clean` on the swarm it would run on (DOCKER_HOST's manager, or the local
    cluster): every run's stack but the live ones'. Nothing if there is no swarm."""
    import docker
    from p2plab.compose.images import image_tag

    try:
        config = settings.resolve()
        manager = docker.DockerClient(base_url=config.manager, timeout=60)
        if not (manager.info().get("Swarm") or {}).get("ControlAvailable"):
            return []
    except Exception:  # no swarm configured or reachable: nothing of ours can be there
        return []
    # The sweep runs in a node image every engine can pull: the newest the manager's
    # engine pulled from the cluster's registry (the current source's tag may not have
    # been pushed yet), else that tag.
    fallback = f"{config.registry}/{IMAGE_REPO}:{image_tag().split(':', 1)[1]}"
    pulled = sorted(manager.images.list(name=f"{config.registry}/{IMAGE_REPO}"),
                    key=lambda i: i.attrs.get("Created", ""), reverse=True)
    for image in pulled:
        if image.tags:
            fallback = image.tags[0]
            break
    return remove_stack(manager, None, fallback, config, spare=spare)
