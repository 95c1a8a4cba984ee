"""Export a scenario's topology as a compose project that runs without p2plab.

The folder holds ``compose.yaml``, the routers' nftables rules, the image's build
context (so ``docker compose up --build`` works on a machine that has never seen
p2plab), an empty run directory the nodes write their event logs into, and a README.
Addresses, NAT rules and node flags come from the same plan every backend uses.

Two services stand in for what p2plab's Docker backend does from the host:
``lab-host`` (host network, NET_ADMIN) takes the host's address off every lab bridge
and lets each bridge's own NAT'd traffic past Docker's isolation rules, removing its
rules again when it stops; a ``NODE-route`` service per node shares the node's network
namespace to set its default route (via its NAT router, or none), so the node itself
holds no NET_ADMIN.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from p2plab.compose.backends.containers import route_commands, router_environment
from p2plab.compose.backends.docker import bridge_rule, seal_bridge_commands
from p2plab.compose.images import (
    base_image,
    compiled,
    ensure_wheels,
    image_programs,
    image_tag,
    write_build_context,
)
from p2plab.compose.impls.builds import APP_IMPLS, Built
from p2plab.topology.plan import LabPlan

LAB = PurePosixPath("/lab")


def _bridge(plan: LabPlan, segment: str) -> str:
    return f"p2x{plan.scenario.name[:9]}{list(plan.segments).index(segment)}"[:15]


def _host_script(plan: LabPlan) -> str:
    """Shell for the lab-host service: seal the bridges, allow their traffic, undo on stop."""
    comment = f"p2pl-export-{plan.scenario.name}"
    add, delete = [], []
    for segment in plan.segments:
        bridge = _bridge(plan, segment)
        add += [shlex.join(c) for c in seal_bridge_commands(bridge, comment)]
        delete.append(f"{shlex.join(['iptables', '-D', *bridge_rule(bridge, comment)])} "
                      "2>/dev/null || true")
    undo = "; ".join(delete)
    return "\n".join([
        "set -e",
        *add,
        'echo "lab-host: bridges sealed, NAT traffic allowed"',
        f"trap '{undo}; exit 0' TERM INT",
        "while :; do sleep 3600 & wait $!; done",
    ])


def compose_project(plan: LabPlan, tag: str, builds: Mapping[str, Built]) -> dict[str, Any]:
    # Not the run labels: an exported lab belongs to its compose project, and `p2plab
    # clean` (which selects by p2plab.run) must never remove it.
    labels = {"p2plab.export": plan.scenario.name}
    networks = {
        segment: {
            "internal": True,
            "driver_opts": {"com.docker.network.bridge.name": _bridge(plan, segment)},
            "ipam": {"config": [{"subnet": str(seg.subnet), "gateway": str(seg.engine_address)}]},
            "labels": labels,
        }
        for segment, seg in plan.segments.items()
    }
    common = {"image": tag, "labels": labels, "volumes": ["./lab:/lab"]}
    services: dict[str, Any] = {
        "lab-host": {
            **common, "network_mode": "host", "cap_add": ["NET_ADMIN"],
            "command": ["sh", "-c", _host_script(plan)],
            "build": {"context": "./image", "args": {"BASE_IMAGE": base_image()}},
            "stop_grace_period": "5s",
        }
    }
    for router in plan.routers.values():
        upstream = [r.name for r in plan.routers.values() if r.lan == router.upstream]
        services[router.name] = {
            **common,
            "command": ["p2plab-router", str(router.lan_ip), str(router.wan_ip),
                        str(LAB / "routers" / f"{router.name}.nft")],
            "cap_add": ["NET_ADMIN"],
            "environment": router_environment(router),
            "sysctls": {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.disable_ipv6": "1",
                        **router.sysctls},
            "networks": {router.lan: {"ipv4_address": str(router.lan_ip)},
                         router.upstream: {"ipv4_address": str(router.wan_ip)}},
            "depends_on": ["lab-host", *upstream],
        }
    routers_of = {r.lan: r.name for r in plan.routers.values() if r.lan in plan.segments}
    relays = [n.name for n in plan.nodes.values() if n.role == "relay"]
    for node in plan.nodes.values():
        depends = ["lab-host"] + ([routers_of[node.segment]] if node.segment in routers_of else [])
        if node.role != "relay":
            depends += relays
        services[node.name] = {
            **common,
            "command": node.command(LAB, image_programs(builds)),
            "networks": {node.segment: {"ipv4_address": str(node.ip)}},
            "sysctls": {"net.ipv6.conf.all.disable_ipv6": "1"},
            "depends_on": depends,
            "stop_grace_period": "3s",
        }
        routes = " && ".join(" ".join(c) for c in route_commands(node.gateway, node.routes))
        services[f"{node.name}-route"] = {
            "image": tag, "labels": labels, "network_mode": f"service:{node.name}",
            "cap_add": ["NET_ADMIN"], "depends_on": [node.name],
            "command": ["sh", "-c", routes],
            "restart": "on-failure",
        }
    return {"name": f"p2plab-{plan.scenario.name}", "networks": networks, "services": services}


def export_compose(plan: LabPlan, scenario_text: str, out: Path,
                   builds: Mapping[str, Built]) -> Path:
    """Write the compose project into ``out`` (which must not exist or be empty);
    ``builds``: each implementation the plan's nodes name, built."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: choose a new folder")
    tag = image_tag(list(builds.values()))
    lab = out / "lab"
    for sub in ("events", "control", "routers"):
        (lab / sub).mkdir(parents=True, exist_ok=True)
    for router in plan.routers.values():
        (lab / "routers" / f"{router.name}.nft").write_text(router.nft_ruleset)
    image = out / "image"
    image.mkdir()
    write_build_context(image, ensure_wheels(lambda m: None))
    # One image here: compiled programs go where the layered image has them (app/ is
    # /opt/p2plab/ in the image).
    for built in compiled(list(builds.values())):
        assert built.program is not None
        folder = image / "app" / PurePosixPath(APP_IMPLS).relative_to("/opt/p2plab") / built.key
        folder.mkdir(parents=True)
        shutil.copy(built.program, folder / built.program.name)
    (out / "scenario.yaml").write_text(scenario_text)
    project = compose_project(plan, tag, builds)
    (out / "compose.yaml").write_text(
        f"# Exported by p2plab from scenario {plan.scenario.name!r} (seed "
        f"{plan.scenario.seed}). See README.md.\n"
        + yaml.dump(project, Dumper=_PlainDumper, sort_keys=False))
    (out / "README.md").write_text(_readme(plan, tag))
    return out / "compose.yaml"


class _PlainDumper(yaml.SafeDumper):
    """No &anchors: the file is for people to read and edit."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _readme(plan: LabPlan, tag: str) -> str:
    nodes = "\n".join(f"| {n.name} | {n.segment} | {n.ip} | {n.role} | `{n.peer_id}` |"
                      for n in plan.nodes.values())
    return f"""# {plan.scenario.name}: a p2plab topology as a compose project

{plan.scenario.description.strip()}

Run it as root on a Linux host with Docker and compose v2:

    docker compose up --build -d     # builds {tag} if it is not there
    docker compose exec alice sh     # a shell in a node (any service name works)
    docker compose logs -f
    docker compose down              # also removes the lab-host firewall rules

Every node writes its JSON-lines event log to `lab/events/NODE.jsonl` and reads
commands from the FIFO `lab/control/NODE.fifo`, for example:

    echo '{{"cmd": "publish", "count": 10, "size": 100, "rate": 5}}' > lab/control/alice.fifo

| node | segment | address | role | peer id |
|---|---|---|---|---|
{nodes}

The `lab-host` service runs on the host network with NET_ADMIN: it removes the
host's address from each lab bridge (so the lab cannot reach the host) and adds one
`DOCKER-USER` rule per bridge so that NAT'd traffic is not dropped by Docker's
isolation rules; it deletes those rules when it stops. NAT rules for each router are in
`lab/routers/`. Without a registry, build the base image first (p2plab's
`make images`) or set `BASE_IMAGE` in compose.yaml to a Debian bookworm image you have.
"""
