"""The swarm backend: the lab across the engines of a Docker Swarm cluster.

What is deployed, as one stack (``p2pl-RUN``, so ``docker stack ls`` shows it):
- every segment of the plan as an overlay network, internal and attachable, with the
  plan's subnet; lab traffic between engines crosses hosts in VXLAN;
- the run's agent (compose/backends/swarm/agent.py) as a global service: one task per engine,
  on the engine's host network, never on a lab network;
- the NAT routers and nodes as containers with the plan's addresses, started on their
  engine through that engine's agent. Swarm services get addresses from swarm's IPAM,
  never the plan's, and the plan's addresses are what NAT rules, routes and dial
  addresses are written in; so hosts are containers, attached to the stack's networks,
  placed by p2plab (placement.py) and started through each engine's own API.

The image comes from a registry every engine can pull from (``--registry``): engines
cannot share a local image. The runner's results folder gets the nodes' event logs as
they are written, each event's time moved onto the runner's clock (clocks.py).
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import platform
import shlex
import shutil
import ssl
import tarfile
import time
from collections.abc import Callable, Container
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from p2plab.compose.backends.base import PREFIX, BackendError
from p2plab.compose.backends.containers import (
    LAB_MOUNT,
    PARALLEL,
    ROLE_LABEL,
    RUN_LABEL,
    ContainerBackend,
)
from p2plab.compose.backends.swarm import clocks, placement, settings
from p2plab.compose.backends.swarm import kept as swarm_kept
from p2plab.compose.backends.swarm.engines import AgentLines, EngineHandle, engine_client
from p2plab.compose.backends.swarm.kept import SwarmKeep
from p2plab.compose.backends.swarm.registry import publish_image
from p2plab.compose.backends.swarm.stack import (
    clean_swarm,
    remove_quietly,
    remove_stack,
    remove_swarm_certificates,
)
from p2plab.compose.backends.swarm.tls import RunCertificates, issue
from p2plab.topology.placement import engine_attributes
from p2plab.topology.plan import LabPlan

from p2plab.resources import cache_dir

STACK_LABEL = "com.docker.stack.namespace"
AGENT_READY_TIMEOUT_S = 120.0  # includes every engine pulling the image


class SwarmBackend(ContainerBackend):
    name = "swarm"
    places_hosts = True
    shares_address_space = True  # the overlays share the cluster's address space
    netns_python = "python"  # link stages and probes run inside the containers too
    refused = "the swarm"
    router_timeout_s = 30.0
    run_folders = ("events", "logs", "control", "routers", "links")

    def __init__(self, run_id: str, log: Callable[[str], None] = lambda message: None) -> None:
        super().__init__(run_id, log)
        self.stack = f"{PREFIX}{run_id}"
        self.settings: settings.SwarmSettings | None = None
        self.manager: Any = None
        self.engines: list[EngineHandle] = []
        self.where: dict[str, EngineHandle] = {}  # host -> engine
        self.certs: RunCertificates | None = None
        self.port = settings.agent_port(run_id)
        self.offsets: dict[str, clocks.ClockOffset] = {}
        self.offsets_end: dict[str, clocks.ClockOffset] = {}
        self.mirrors: list[clocks.EventMirror] = []
        self.timings: dict[str, float] = {}
        self.kept: SwarmKeep | None = None  # set when re-attached to a kept lab

    @classmethod
    def reattach(cls, run_id: str, run_dir: Path, details: dict[str, Any]) -> SwarmBackend:
        backend = cls(run_id)
        backend.run_dir = run_dir
        backend.kept = SwarmKeep.of(details)
        return backend

    def _reach(self) -> SwarmKeep:
        """How the runner's machine reaches each host's engine through its agent."""
        return self.kept if self.kept is not None else SwarmKeep.of(self.kept_details())

    def _docker_cli(self, host: str) -> list[str]:
        return swarm_kept.docker_cli(self._reach(), host)

    def check_address_space(self, subnets: list[str]) -> None:
        """The local cluster's engines have their own addresses: a lab may not use them."""
        from p2plab.compose.backends.swarm.cluster import CLUSTER_NET

        for subnet in subnets:
            if ipaddress.IPv4Network(subnet).overlaps(CLUSTER_NET):
                raise BackendError(f"subnet {subnet} overlaps {CLUSTER_NET}, which the local "
                                   "cluster (make cluster) uses: give the scenario another "
                                   "subnet")

    def take_down(self) -> list[str]:
        assert self.run_dir is not None
        return swarm_kept.bring_down(self._reach(), self.run_id, self.run_dir, self.log)

    @classmethod
    def clean(cls, spare: Container[str], logs_dirs: dict[str, Path]) -> list[str]:
        return clean_swarm(spare) + remove_swarm_certificates(spare)

    # -- environment ----------------------------------------------------------------
    def check_environment(self, plan: LabPlan) -> None:
        import docker

        self.settings = settings.resolve(self.log)
        try:
            self.manager = docker.DockerClient(base_url=self.settings.manager, timeout=120)
            info = self.manager.info()
        except Exception as exc:
            raise BackendError(f"no Docker engine at {self.settings.manager} ({exc}): "
                               "point DOCKER_HOST at a swarm manager, or make cluster") from None
        swarm = info.get("Swarm") or {}
        if not swarm.get("ControlAvailable"):
            raise BackendError(f"the engine at {self.settings.manager} is not a swarm manager "
                               "(docker swarm init, or make cluster for a local cluster)")
        nodes = [n for n in self.manager.nodes.list()
                 if n.attrs["Status"]["State"] == "ready"
                 and n.attrs["Spec"].get("Availability") == "active"]
        if not nodes:
            raise BackendError("the swarm has no ready, active node")
        self.engines = sorted(
            (EngineHandle(n.id, n.attrs["Description"]["Hostname"], _node_address(n),
                          attributes=engine_attributes(n.attrs))
             for n in nodes), key=lambda e: e.hostname)
        started = time.monotonic()
        self.build_implementations()
        self.image = publish_image(self.manager, self.settings.registry, self.log,
                                   list(self.builds.values()))
        self.timings["image_s"] = round(time.monotonic() - started, 2)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "kernel": platform.release(),
            "cluster": {
                "manager": self.settings.manager if self.settings else None,
                "registry": self.settings.registry if self.settings else None,
                "stack": self.stack,
                "engines": [{"hostname": e.hostname, "node_id": e.node_id,
                             "address": e.address, "docker_engine": e.docker_engine}
                            for e in self.engines],
                "engine_of": {host: e.hostname for host, e in sorted(self.where.items())},
                "hosts_per_engine": placement.counts(self.where),
                "placement": {"default": os.environ.get("P2PLAB_PLACEMENT", "spread"),
                              "groups": (placement.rules_used(self.plan, self.where)
                                         if self.plan else {})},
                "clock_offsets": {name: o.as_dict() for name, o in self.offsets.items()},
                "clock_offsets_end": {n: o.as_dict() for n, o in self.offsets_end.items()},
                "timings_s": self.timings,
            },
            "image": str(self.image),
            "nat": "nftables ruleset loaded with `nft -f` by each router container",
            "link_impairment": "applied inside each node's container (see link_shaping)",
            "clock_correction": "event times moved onto the runner's clock by each "
                                "engine's offset measured at the start (cluster.clock_offsets)",
        }

    def _extra_labels(self) -> dict[str, str]:
        return {STACK_LABEL: self.stack}

    # -- ContainerBackend's hooks: hosts placed on the swarm's engines -------------------
    def _prepare(self, plan: LabPlan, run_dir: Path) -> None:
        """Engines chosen first (a group no engine qualifies for stops the run before
        anything is made), then the run's agents, the clocks and the event mirrors."""
        self.where = placement.place(plan, self.engines)
        started = time.monotonic()
        self._deploy_agents()
        self.timings["agents_s"] = round(time.monotonic() - started, 2)
        for engine in self.engines:
            assert engine.lines is not None  # _deploy_agents connected every engine
            self.offsets[engine.hostname] = clocks.measure(engine.lines.clock_sample)
            mirror = clocks.EventMirror(engine.lines.connect, run_dir,
                                        self.offsets[engine.hostname], self.log)
            mirror.start()
            self.mirrors.append(mirror)

    def _create(self, plan: LabPlan, run_dir: Path) -> None:
        started = time.monotonic()
        super()._create(plan, run_dir)
        self.timings["deploy_s"] = round(time.monotonic() - started, 2)

    def _client_for(self, host: str) -> Any:
        return self.where[host].client

    def _clients(self) -> list[Any]:
        return [e.client for e in self.engines]

    def _lab_source(self) -> str:
        return f"{self.prefix}lab"

    def _where(self, host: str) -> str:
        return f" on {self.where[host].hostname}"

    def _connect_upstream(self, container: Any, router: Any) -> None:
        self.where[router.name].client.api.connect_container_to_network(
            container.id, self.networks[router.upstream].name, ipv4_address=str(router.wan_ip))

    def _apply_routes(self, host: str, commands: list[list[str]]) -> None:
        self._net_admin(host, commands)

    def _set_sysctls(self, router: str, sysctls: dict[str, str]) -> None:
        for key, value in sysctls.items():
            now = self.exec(router, ["sysctl", "-n", key])
            if now.returncode == 0 and now.stdout.split() == value.split():
                continue  # as the router started: nothing to change
            done = self.exec(router, ["sysctl", "-qw", f"{key}={value}"])
            if done.returncode != 0:
                raise BackendError(
                    f"router {router}: {key}={value} cannot change on a running swarm router "
                    f"({done.stderr.strip()}): a NAT change that needs other sysctls is "
                    "supported on --backend docker and netns only")

    def _deploy_agents(self) -> None:
        from docker.types import EndpointSpec, Mount, RestartPolicy, SecretReference, ServiceMode

        assert self.settings is not None and self.run_dir is not None
        folder = cache_dir() / "swarm-runs" / self.run_id
        self.certs = issue(folder, self.run_id, [e.address for e in self.engines])
        secrets = []
        for name, path in (("p2plab-ca", self.certs.ca),
                           ("p2plab-agent-cert", self.certs.agent_cert),
                           ("p2plab-agent-key", self.certs.agent_key)):
            secret = self.manager.secrets.create(name=f"{self.prefix}{name}",
                                                 data=path.read_bytes(), labels=self._labels())
            secrets.append(SecretReference(secret.id, f"{self.prefix}{name}", filename=name))
        self.manager.services.create(
            self.image, name=f"{self.prefix}agent",
            command=["python", "-m", "p2plab.compose.backends.swarm.agent",
                     "--port", str(self.port)],
            mode=ServiceMode("global"), networks=["host"], labels=self._labels("agent"),
            container_labels=self._labels("agent"), secrets=secrets,
            mounts=[Mount("/var/run/docker.sock", self.settings.engine_socket, type="bind"),
                    Mount(str(LAB_MOUNT), f"{self.prefix}lab", type="volume",
                          labels=self._labels())],
            restart_policy=RestartPolicy(condition="on-failure", max_attempts=3),
            endpoint_spec=EndpointSpec(mode="dnsrr"),
        )
        deadline = time.monotonic() + AGENT_READY_TIMEOUT_S
        pending = list(self.engines)
        while pending:
            for engine in list(pending):
                lines = AgentLines(engine.address, self.port + 1, self.certs)
                try:
                    lines.clock_sample()
                except (OSError, ssl.SSLError, ValueError):
                    lines.close()
                    continue
                engine.lines = lines
                engine.client = engine_client(engine.address, self.port, self.certs)
                engine.docker_engine = str(engine.client.version().get("Version"))
                engine.agent_container = engine.client.containers.list(
                    filters={"label": [f"{RUN_LABEL}={self.run_id}", f"{ROLE_LABEL}=agent"]})[0]
                pending.remove(engine)
            if not pending:
                break
            if time.monotonic() > deadline:
                raise BackendError(
                    f"the run's agent did not answer on {', '.join(e.address for e in pending)} "
                    f"port {self.port + 1} within {AGENT_READY_TIMEOUT_S:g} s: "
                    f"{self._agent_state()}")
            time.sleep(0.5)

    def _agent_state(self) -> str:
        try:
            service = self.manager.services.get(f"{self.prefix}agent")
            states = [f"{t['Status']['State']}: {t['Status'].get('Err', '')}"
                      for t in service.tasks()]
            return "; ".join(states) or "no task yet"
        except Exception as exc:  # the message is a courtesy
            return str(exc)

    def _create_network(self, segment: str) -> None:
        import docker

        assert self.plan is not None
        seg = self.plan.segments[segment]
        used = {str(h.ip) for h in self.plan.hosts() if h.segment == segment}
        for router in self.plan.routers.values():
            used |= ({str(router.lan_ip)} if router.lan == segment else set()) | (
                {str(router.wan_ip)} if router.upstream == segment else set())
        spare = placement.dynamic_range(seg.subnet, used, len(self.engines))
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
            subnet=str(seg.subnet), gateway=str(seg.engine_address), iprange=str(spare))])
        try:
            self.networks[segment] = self.manager.networks.create(
                f"{self.prefix}{segment}", driver="overlay", internal=True, attachable=True,
                ipam=ipam, labels=self._labels(), scope="swarm")
        except docker.errors.APIError as exc:
            raise BackendError(f"cannot create overlay network for segment {segment!r} "
                               f"({seg.subnet}): {exc.explanation or exc}") from None

    def _write_lab_file(self, host: str, relative: str, text: str) -> None:
        """In the results folder, and in the run's volume on the host's engine (routers
        read their rules there)."""
        super()._write_lab_file(host, relative, text)
        engine = self.where[host]
        data = text.encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(relative)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        engine.agent_container.put_archive(str(LAB_MOUNT), buffer.getvalue())

    def _start_host(self, name: str, attempts: int = 4) -> None:
        """Start a host's container. An engine's request to attach a container to an
        overlay sometimes times out (moby/moby#41841: here, right after another run's
        networks of the same subnets went away), and the engine then forgets the
        network: the container is made again from its recipe and started again."""
        import docker

        for attempt in range(attempts):
            try:
                self.containers[name].start()
                return
            except docker.errors.APIError as exc:
                if "attaching to network failed" not in str(exc) or attempt == attempts - 1:
                    raise BackendError(f"{name} did not start on {self.where[name].hostname}: "
                                       f"{exc.explanation or exc}") from None
                self.log(f"{name}: the engine timed out attaching it to its network; "
                         "making it again")
                remove_quietly(self.containers[name])
                time.sleep(1.0 + attempt)
                self.recipes[name]()

    def _net_admin(self, host: str, commands: list[list[str]]) -> None:
        """Commands with NET_ADMIN in a host's network namespace (routes): a short-lived
        helper container joins it, so the node itself never holds the capability.
        (Privileged execs would be simpler, but engines inside containers, as in CI,
        refuse them.)"""
        import docker

        engine = self.where[host]
        script = " && ".join(shlex.join(c) for c in commands)
        try:
            engine.client.containers.run(
                self.image, ["sh", "-c", script], remove=True, stderr=True,
                network_mode=f"container:{self.containers[host].id}", cap_add=["NET_ADMIN"],
                labels=self._labels("helper"))
        except docker.errors.ContainerError as exc:
            raise BackendError(f"network set-up of {host} failed: `{script}`: "
                               f"{(exc.stderr or b'').decode().strip()}") from None

    def send_command(self, host: str, command: dict[str, Any]) -> None:
        from p2plab.control import ControlError

        if self.kept is not None:
            swarm_kept.send(self.kept, host, command)
            return
        engine = self.where[host]
        assert engine.lines is not None
        try:
            answer = engine.lines.request(f"send {host}", json.dumps(command))
        except (OSError, ssl.SSLError) as exc:
            engine.lines.close()
            raise ControlError(f"the agent on {engine.hostname} is unreachable: {exc}") from None
        if answer != "ok":
            raise ControlError(answer.removeprefix("error: "))

    def host_pid(self, host: str) -> int | None:
        """The container's first process, if its engine shares this machine's kernel
        (the local cluster): CPU is accounted from /proc. None on other machines."""
        container = self.containers.get(host)
        if container is None:
            return None
        try:
            container.reload()
            pid = int(container.attrs["State"]["Pid"])
            if pid and container.id in Path(f"/proc/{pid}/cgroup").read_text():
                return pid
        except Exception:  # gone, restarting, or on another machine
            return None
        return None

    def netns_command(self, host: str) -> list[str]:
        """``docker run`` through the host's engine's agent: a helper container with
        NET_ADMIN in the host's network namespace and the run's volume at /lab, running
        the image's programs (paths: lab_path). Stopping this command stops the helper
        (the CLI passes signals on) and removes it."""
        return [*self._docker_cli(host), "run", "--rm", "-i",
                "--network", f"container:{self.prefix}{host}", "--cap-add", "NET_ADMIN",
                "--label", f"{RUN_LABEL}={self.run_id}", "--label", f"{ROLE_LABEL}=helper",
                "-v", f"{self.prefix}lab:{LAB_MOUNT}", str(self.image)]

    def kept_details(self) -> dict[str, Any]:
        assert self.settings is not None and self.certs is not None
        return SwarmKeep(
            manager=self.settings.manager, engine_socket=self.settings.engine_socket,
            image=str(self.image), port=self.port, certs=str(self.certs.folder),
            hosts={host: e.address for host, e in self.where.items()},
            offsets={e.address: self.offsets[e.hostname].offset_s for e in self.engines
                     if e.hostname in self.offsets}).as_dict()

    def engine_of(self, host: str) -> str | None:
        engine = self.where.get(host)
        return engine.hostname if engine else None

    def lab_path(self, path: Path) -> str:
        """Where a file of the results folder is inside a lab host: under /lab."""
        assert self.run_dir is not None
        return str(LAB_MOUNT / path.relative_to(self.run_dir))

    # -- teardown -------------------------------------------------------------------
    def destroy(self) -> None:
        """Remove the stack on every engine: save unsaved node logs, measure the clocks
        once more, stop the mirrors (after a last read), then the agents; a global
        sweep service removes the run's containers and volume on every engine; then the
        networks and secrets. Safe to call twice, and after a half-made lab."""
        if self.manager is None:
            return
        self.save_node_logs()
        for engine in self.engines:
            if engine.lines is not None:
                try:
                    self.offsets_end[engine.hostname] = clocks.measure(engine.lines.clock_sample)
                except (OSError, ssl.SSLError, ValueError):
                    pass
                engine.lines.close()
        for mirror in self.mirrors:
            mirror.stop()
        self.mirrors = []
        # Removed through their engines first, so each engine detaches them from the
        # overlays in order (the sweep after the agents is for what this missed).
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(remove_quietly, self.containers.values()))
        remove_stack(self.manager, self.run_id, self.image, self.settings, self.log)
        self._remove_stragglers()
        if self.certs is not None:
            shutil.rmtree(self.certs.folder, ignore_errors=True)

    def _remove_stragglers(self, timeout: float = 30.0) -> None:
        """What the sweep missed on an engine, removed through that engine's own API: an
        agent task the engine had not stopped yet when its engine's sweep ran (seen on a
        loaded host after a 50-node run), and the run's volume it held."""
        selector = {"label": f"{RUN_LABEL}={self.run_id}"}
        deadline = time.monotonic() + timeout
        for engine in self.engines:
            if engine.client is None:
                continue
            while True:
                try:
                    containers = engine.client.containers.list(all=True, filters=selector)
                    for container in containers:
                        remove_quietly(container)
                    volumes = engine.client.volumes.list(filters=selector)
                    for volume in volumes:
                        try:
                            volume.remove(force=True)
                        except Exception:  # still in use by a container going away
                            pass
                except Exception:  # the engine is unreachable: nothing more to do there
                    break
                if (not containers and not volumes) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)


def _node_address(node: Any) -> str:
    address = node.attrs["Status"].get("Addr", "")
    if address in ("", "0.0.0.0", "127.0.0.1"):
        manager = (node.attrs.get("ManagerStatus") or {}).get("Addr", "")
        address = manager.rsplit(":", 1)[0]
    return address
