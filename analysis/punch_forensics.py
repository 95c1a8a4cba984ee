"""Why a hole punch failed, in network terms, from what the routers recorded
(``forensics: true``: each router's ``conntrack -E`` log, routers/ROUTER.conntrack),
never from NAT theory.

For each pair whose punch failed and stayed relayed, and each direction of it: where the
sender's router sent its packets (which public port it mapped the sender's socket to,
towards which address and port of the receiver), whether they reached the receiver's
router, and there whether they were translated to the receiver or not, beside what the
receiver's own router had mapped towards the sender and towards the relay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2plab.analysis.metrics import pair_key

FOLDER = "routers"
_EVENT = re.compile(r"\[(?P<t>[0-9.]+)\]\s+\[(?P<event>NEW|UPDATE|DESTROY)\]\s+"
                    r"(?P<proto>tcp|udp)\s+(?P<rest>.*)")
_TUPLE = re.compile(r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)")


@dataclass(frozen=True)
class Flow:
    """One connection-tracking entry of a router: the packet as it arrived, and the
    answer it expects (for a flow out through the NAT, ``reply_dport`` is the public port
    the sender's socket was mapped to; for one from outside, ``reply_src`` is the host it
    was translated to, or the router itself when nothing was mapped for it)."""

    t: float
    proto: str
    src: str
    dst: str
    sport: int
    dport: int
    reply_src: str
    reply_dport: int
    replied: bool


def read_flows(path: Path) -> list[Flow]:
    """A router's log as one Flow per entry (its first sighting; replied if any event
    of it saw an answer)."""
    flows: dict[tuple[str, str, str, int, int], Flow] = {}
    for line in path.read_text(errors="replace").splitlines():
        match = _EVENT.match(line.strip())
        if match is None:
            continue
        tuples = _TUPLE.findall(match["rest"])
        if len(tuples) != 2:
            continue
        (src, dst, sport, dport), (rsrc, _, _, rdport) = tuples
        key = (match["proto"], src, dst, int(sport), int(dport))
        replied = ("[UNREPLIED]" not in match["rest"] and match["event"] != "NEW") or (
            "[ASSURED]" in match["rest"])
        seen = flows.get(key)
        if seen is None:
            flows[key] = Flow(float(match["t"]), match["proto"], src, dst, int(sport),
                              int(dport), rsrc, int(rdport), replied)
        elif replied and not seen.replied:
            flows[key] = Flow(seen.t, seen.proto, src, dst, seen.sport, seen.dport,
                              seen.reply_src, seen.reply_dport, True)
    return sorted(flows.values(), key=lambda f: f.t)


@dataclass(frozen=True)
class Side:
    node: str
    ip: str
    router: str | None  # None: a public node
    public_ip: str
    nats: int  # how many NATs in front of it


def _sides(manifest: dict[str, Any]) -> dict[str, Side]:
    routers = manifest.get("routers", {})
    by_lan = {r["lan"]: name for name, r in routers.items()}
    sides = {}
    for name, node in manifest.get("nodes", {}).items():
        router, nats, segment = by_lan.get(node["segment"]), 0, node["segment"]
        outer = None
        while segment in by_lan:
            outer, nats = by_lan[segment], nats + 1
            segment = routers[outer]["upstream"]
        public = routers[outer]["wan_ip"] if outer is not None else node["ip"]
        sides[name] = Side(name, node["ip"], router, public, nats)
    return sides


def _ports(ports: set[int] | list[int]) -> str:
    ordered = sorted(set(ports))
    return ", ".join(map(str, ordered[:4])) + (", ..." if len(ordered) > 4 else "")


def _direction(sender: Side, receiver: Side, logs: dict[str, list[Flow]],
               relays: list[str]) -> dict[str, Any]:
    """What the routers recorded of the sender's packets towards the receiver."""
    out: dict[str, Any] = {"from": sender.node, "to": receiver.node}
    sent = [f for f in logs.get(sender.router or "", []) if f.src == sender.ip
            and f.dst == receiver.public_ip]
    arrived = [f for f in logs.get(receiver.router or "", []) if f.src == sender.public_ip
               and f.dst == receiver.public_ip]
    let_in = [f for f in arrived if f.reply_src == receiver.ip]
    dropped = [f for f in arrived if f.reply_src != receiver.ip]
    protocols = {f.proto for f in sent}
    # Only the receiver's mappings in the sender's protocols could have let it in.
    mine = [f for f in logs.get(receiver.router or "", []) if f.src == receiver.ip
            and (not protocols or f.proto in protocols)]
    towards_sender = {f.reply_dport for f in mine if f.dst == sender.public_ip}
    towards_relay = {f.reply_dport for f in mine if f.dst in relays}
    out.update({
        "sent_protocols": sorted(protocols),
        "sent_to_ports": sorted({f.dport for f in sent}),
        "sent_from_ports": sorted({f.reply_dport for f in sent}),
        "reached_receivers_router": len(arrived), "translated": len(let_in),
        "not_translated": len(dropped), "not_translated_at": sorted({f.dport for f in dropped}),
        "receiver_mapped_towards_sender": sorted(towards_sender),
        "receiver_mapped_towards_relay": sorted(towards_relay),
    })
    s, r = sender, receiver
    sending = (f"{s.node} (public, {s.public_ip})" if s.router is None
               else f"{s.node} (behind {s.router})")
    if s.router is not None and not sent:
        out["text"] = (f"{s.node}'s router {s.router} recorded nothing sent to {r.node}'s "
                       f"address {r.public_ip}")
        return out
    to = f"{r.public_ip}:{_ports(out['sent_to_ports'])}" if sent else r.public_ip
    source = f" from {s.public_ip}:{_ports(out['sent_from_ports'])}" if sent else ""
    over = f" {'/'.join(p.upper() for p in sorted(protocols))}" if protocols else ""
    text = f"{sending} sent{over} to {to}{source}"
    if r.router is not None:
        mapped = (f"{r.public_ip}:{_ports(towards_sender)} towards {s.node}"
                  if towards_sender else f"nothing towards {s.node}")
        if towards_relay:
            mapped += f" and {r.public_ip}:{_ports(towards_relay)} towards the relay"
        text += f"; {r.node}'s router {r.router} had mapped {r.node}'s sockets to {mapped}"
        if let_in:
            text += f", and let {len(let_in)} of {s.node}'s flows in to {r.node}"
        elif dropped:
            text += (f"; nothing was mapped at {r.public_ip}:{_ports(out['not_translated_at'])}"
                     f" for {s.public_ip}: {len(dropped)} flow(s) reached it and were not "
                     "translated")
        else:
            # A packet the router drops is never confirmed: it leaves no entry at all.
            targets = set(out["sent_to_ports"])
            holders = sorted({f"{f.dst}:{f.dport}" for f in mine if f.reply_dport in targets})
            where = f"{r.public_ip}:{_ports(targets)}" if targets else r.public_ip
            text += (f"; it let none of {s.node}'s packets in: "
                     + (f"{where} was {r.node}'s mapping towards {', '.join(holders)} only"
                        if holders else f"nothing was mapped at {where}"))
    out["text"] = text
    return out


def explain_failed_punches(run_dir: Path, manifest: dict[str, Any],
                           summary: dict[str, Any]) -> dict[str, Any]:
    """Per failed pair (DCUtR failed and no direct connection opened): both directions
    as the routers saw them, and one sentence of it. Empty without router logs."""
    folder = run_dir / FOLDER
    files = sorted(folder.glob("*.conntrack")) if folder.is_dir() else []
    if not files:
        return {}
    logs = {path.stem: read_flows(path) for path in files}
    sides = _sides(manifest)
    relays = [n["ip"] for n in manifest.get("nodes", {}).values() if n.get("role") == "relay"]
    out: dict[str, dict[str, Any]] = {}
    for key, punch in summary.get("hole_punch", {}).items():
        if punch["outcome"] != "failure" or punch.get("direct_anyway"):
            continue
        a, b = (sides.get(n) for n in punch["nodes"])
        if a is None or b is None:
            continue
        if a.nats > 1 or b.nats > 1:
            out[key] = {"text": "behind more than one NAT: only a single NAT on each side "
                        "is explained", "cause": None, "directions": []}
            continue
        directions = [_direction(a, b, logs, relays), _direction(b, a, logs, relays)]
        text = "; and ".join(d["text"] for d in directions) + "."
        sent = [set(d["sent_protocols"]) for d in directions]
        cause = None
        if all(sent) and not sent[0] & sent[1]:
            cause = "no-common-transport"
            # Each side dialled the other's candidates in a transport the other never
            # dialled back in: no pair of packets could open the same mapping.
            text = (f"no common transport: {a.node} sent only "
                    f"{'/'.join(sorted(sent[0])).upper()}, {b.node} only "
                    f"{'/'.join(sorted(sent[1])).upper()} (their DCUtR candidates shared "
                    f"no transport both dialled); " + text)
        out[pair_key(a.node, b.node)[0]] = {"text": text, "cause": cause,
                                            "directions": directions}
    return out
