"""Hole-punch forensics: a failed punch explained from the routers' connection tracking
(forensics: true), from synthetic logs and from a real lab whose punch cannot work."""

# ruff: noqa: E501  (the logs below are conntrack -E lines as conntrack writes them)

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from p2plab.analysis.punch_forensics import explain_failed_punches, read_flows

from tests.conftest import P2PLAB, ROOT

ALICE_GW = """\
[1700000001.000001]	    [NEW] udp      17 30 src=10.1.0.10 dst=203.0.113.10 sport=4001 dport=4001 [UNREPLIED] src=203.0.113.10 dst=203.0.113.2 sport=4001 dport=4001
[1700000001.000500]	 [UPDATE] udp      17 30 src=10.1.0.10 dst=203.0.113.10 sport=4001 dport=4001 src=203.0.113.10 dst=203.0.113.2 sport=4001 dport=4001
[1700000005.000001]	    [NEW] udp      17 30 src=10.1.0.10 dst=203.0.113.3 sport=4001 dport=40000 [UNREPLIED] src=203.0.113.3 dst=203.0.113.2 sport=40000 dport=4001
[1700000005.000300]	    [NEW] udp      17 30 src=203.0.113.3 dst=203.0.113.2 sport=51000 dport=4001 [UNREPLIED] src=203.0.113.2 dst=203.0.113.3 sport=4001 dport=51000
"""
BOB_GW = """\
[1700000001.100001]	    [NEW] udp      17 30 src=10.2.0.10 dst=203.0.113.10 sport=4001 dport=4001 [UNREPLIED] src=203.0.113.10 dst=203.0.113.3 sport=4001 dport=40000
[1700000001.100500]	 [UPDATE] udp      17 30 src=10.2.0.10 dst=203.0.113.10 sport=4001 dport=4001 src=203.0.113.10 dst=203.0.113.3 sport=4001 dport=40000 [ASSURED]
[1700000005.000100]	    [NEW] udp      17 30 src=10.2.0.10 dst=203.0.113.2 sport=4001 dport=4001 [UNREPLIED] src=203.0.113.2 dst=203.0.113.3 sport=4001 dport=51000
[1700000005.000400]	    [NEW] udp      17 30 src=203.0.113.2 dst=203.0.113.3 sport=4001 dport=40000 [UNREPLIED] src=203.0.113.3 dst=203.0.113.2 sport=40000 dport=4001
"""
MANIFEST = {
    "routers": {"home-a-gw": {"lan": "home-a", "upstream": "public", "wan_ip": "203.0.113.2"},
                "home-b-gw": {"lan": "home-b", "upstream": "public", "wan_ip": "203.0.113.3"}},
    "nodes": {"relay": {"ip": "203.0.113.10", "segment": "public", "role": "relay"},
              "alice": {"ip": "10.1.0.10", "segment": "home-a", "role": "peer"},
              "bob": {"ip": "10.2.0.10", "segment": "home-b", "role": "peer"}},
}


def _run_dir(tmp_path: Path) -> Path:
    (tmp_path / "routers").mkdir()
    (tmp_path / "routers" / "home-a-gw.conntrack").write_text(ALICE_GW)
    (tmp_path / "routers" / "home-b-gw.conntrack").write_text(BOB_GW)
    return tmp_path


@pytest.mark.quick
def test_a_log_reads_as_flows_with_their_mappings(tmp_path: Path) -> None:
    flows = read_flows(_run_dir(tmp_path) / "routers" / "home-b-gw.conntrack")
    assert len(flows) == 3  # the update is the relay flow's answer, not a flow of its own
    relay, to_alice, from_alice = flows
    assert (relay.src, relay.dst, relay.reply_dport, relay.replied) == (
        "10.2.0.10", "203.0.113.10", 40000, True)
    assert (to_alice.reply_dport, to_alice.replied) == (51000, False)  # a new port: symmetric
    assert from_alice.reply_src == "203.0.113.3"  # not translated to bob


@pytest.mark.quick
def test_a_failed_punch_is_explained_in_network_terms(tmp_path: Path) -> None:
    summary = {"hole_punch": {"alice<->bob": {"nodes": ["alice", "bob"], "outcome": "failure",
                                              "direct_anyway": False}}}
    [(key, found)] = explain_failed_punches(_run_dir(tmp_path), MANIFEST, summary).items()
    assert key == "alice<->bob"
    to_bob, to_alice = found["directions"]
    assert to_bob["sent_to_ports"] == [40000] and to_bob["sent_from_ports"] == [4001]
    assert to_bob["receiver_mapped_towards_sender"] == [51000]
    assert to_bob["receiver_mapped_towards_relay"] == [40000]
    assert (to_bob["not_translated"], to_bob["not_translated_at"]) == (1, [40000])
    assert "alice (behind home-a-gw) sent UDP to 203.0.113.3:40000 from 203.0.113.2:4001; bob's " \
        "router home-b-gw had mapped bob's sockets to 203.0.113.3:51000 towards alice and " \
        "203.0.113.3:40000 towards the relay; nothing was mapped at 203.0.113.3:40000 for " \
        "203.0.113.2" in found["text"]
    assert to_alice["sent_from_ports"] == [51000] and to_alice["not_translated_at"] == [4001]
    # A punch that worked, or a direct connection anyway, needs no explanation.
    for fine in ({"outcome": "success"}, {"outcome": "failure", "direct_anyway": True}):
        summary["hole_punch"]["alice<->bob"].update(fine)
        assert explain_failed_punches(tmp_path, MANIFEST, summary) == {}


# As wild recorded it: a QUIC-only alice dialled bob's TCP candidate (she listens on QUIC
# only but dials TCP), bob dialled her QUIC one: neither router saw a packet it could admit.
ALICE_TCP_GW = """\
[1700000001.000001]	    [NEW] udp      17 30 src=10.1.0.10 dst=203.0.113.10 sport=4001 dport=4001 [UNREPLIED] src=203.0.113.10 dst=203.0.113.2 sport=4001 dport=4001
[1700000005.000001]	    [NEW] tcp      6 120 SYN_SENT src=10.1.0.10 dst=203.0.113.3 sport=53234 dport=4001 [UNREPLIED] src=203.0.113.3 dst=203.0.113.2 sport=4001 dport=53234
"""
BOB_UDP_GW = """\
[1700000001.100001]	    [NEW] tcp      6 120 SYN_SENT src=10.2.0.10 dst=203.0.113.10 sport=4001 dport=4001 [UNREPLIED] src=203.0.113.10 dst=203.0.113.3 sport=4001 dport=4001
[1700000005.000100]	    [NEW] udp      17 30 src=10.2.0.10 dst=203.0.113.2 sport=4001 dport=4001 [UNREPLIED] src=203.0.113.2 dst=203.0.113.3 sport=4001 dport=4001
"""


@pytest.mark.quick
def test_a_punch_without_a_common_transport_is_named_so(tmp_path: Path) -> None:
    (tmp_path / "routers").mkdir()
    (tmp_path / "routers" / "home-a-gw.conntrack").write_text(ALICE_TCP_GW)
    (tmp_path / "routers" / "home-b-gw.conntrack").write_text(BOB_UDP_GW)
    summary = {"hole_punch": {"alice<->bob": {"nodes": ["alice", "bob"], "outcome": "failure",
                                              "direct_anyway": False}}}
    found = explain_failed_punches(tmp_path, MANIFEST, summary)["alice<->bob"]
    assert found["text"].startswith("no common transport: alice sent only TCP, bob only UDP")
    assert found["cause"] == "no-common-transport"
    to_bob, to_alice = found["directions"]
    assert (to_bob["sent_protocols"], to_alice["sent_protocols"]) == (["tcp"], ["udp"])
    # bob's UDP mapping at port 4001 could not have admitted alice's TCP: not named.
    assert to_bob["receiver_mapped_towards_sender"] == []
    assert "alice (behind home-a-gw) sent TCP to 203.0.113.3:4001 from 203.0.113.2:53234" \
        in found["text"]
    # With a common transport the sentence does not say so.
    (tmp_path / "routers" / "home-a-gw.conntrack").write_text(ALICE_GW)
    (tmp_path / "routers" / "home-b-gw.conntrack").write_text(BOB_GW)
    again = explain_failed_punches(tmp_path, MANIFEST, summary)["alice<->bob"]
    assert "no common transport" not in again["text"] and again["cause"] is None


@pytest.mark.quick
def test_without_router_logs_there_is_nothing_to_explain(tmp_path: Path) -> None:
    summary = {"hole_punch": {"alice<->bob": {"nodes": ["alice", "bob"], "outcome": "failure"}}}
    assert explain_failed_punches(tmp_path, MANIFEST, summary) == {}


@pytest.mark.netns
@pytest.mark.usefixtures("no_leftovers")
def test_a_symmetric_nat_punch_is_explained_from_the_routers(tmp_path: Path) -> None:
    done = subprocess.run([*P2PLAB, "run", "nat-holepunch", "--backend", "netns",
                           "--set", "lans.home-b.nat=symmetric", "--set", "forensics=true",
                           "--results", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    run = next(tmp_path.iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert done.returncode == 1, done.stdout + done.stderr  # its punch expectation fails
    assert {p.name for p in (run / "routers").iterdir()} == {
        "home-a-gw.conntrack", "home-b-gw.conntrack"}
    [(key, found)] = summary["punch_forensics"].items()
    assert key == "alice<->bob", summary["hole_punch"]
    into_alice = next(d for d in found["directions"] if d["to"] == "alice")
    # bob's symmetric NAT gave his socket a new port towards alice: her router let none
    # of it in; the explanation says so with the ports the routers recorded.
    assert into_alice["translated"] == 0
    assert set(into_alice["sent_from_ports"]).isdisjoint(
        next(d for d in found["directions"] if d["to"] == "bob")["receiver_mapped_towards_relay"])
    assert "let none of bob's packets in" in found["text"]
    assert "Why hole punches failed" in (run / "report.md").read_text()
