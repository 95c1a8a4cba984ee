"""Links, faults and traffic on a real lab (network namespaces; the suite runs the
shipped fault scenarios on Docker): delays measured on the wire, a partition that
really separates, a crash and a restart with the same identity."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import P2PLAB

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("no_leftovers")]

LINKS = """\
name: links
seed: 5
lans:
  - {name: slow, subnet: 10.70.0.0/24, nat: port-restricted,
     link: {latency_ms: 15, jitter_ms: 2}}
  - {name: lossy, subnet: 10.71.0.0/24, nat: port-restricted,
     link: {latency_ms: 5, loss_pct: 20}}
nodes:
  - {name: server, lan: public}
  - {name: a, lan: slow, dial: [server]}
  - {name: b, lan: lossy, dial: [server]}
"""

FAULTS = """\
name: faults
seed: 9
nodes:
  - {name: n, count: 5, lan: public}
connect: {graph: full-mesh}
timeline:
  - {wait: topic-peers, nodes: ["*"], min: 3, timeout: 40}
  - {publish: [n-1], count: 200, rate: 4, name: long}
  - {sleep: 1}
  - {partition: [[n-1, n-2], [n-3, n-4, n-5]]}
  - {sleep: 3}
  - {heal: true}
  - {link-down: [n-5]}
  - {sleep: 3}
  - {link-up: [n-5]}
  - {kill: [n-4]}
  - {sleep: 2}
  - {restart: [n-4], at: 14}
  - {sleep: 4}
  - {stop-traffic: long}
  - {publish: [n-2], count: 4, rate: 4, name: after}
  - {sleep: 3}
"""


def test_links_are_shaped_as_configured_and_measured(p2plab_lab, tmp_path: Path) -> None:
    path = tmp_path / "links.yaml"
    path.write_text(LINKS)
    lab = p2plab_lab(str(path), backend="netns")  # started as a run starts: links measured
    rtt = json.loads((lab.run_dir / "link_rtt.json").read_text())
    assert rtt["mechanism"] in ("netem", "nfqueue")
    rows = {r["pair"]: r for r in rtt["pairs"]}
    slow = rows["a->server"]
    assert slow["configured_ms"] == 30.0
    assert 28.0 <= slow["median_ms"] <= 40.0, slow  # 2 x 15 ms, jitter ± 2 each way
    lossy = rows["b->server"]
    assert lossy["configured_ms"] == 10.0
    # 20 % each way: about 64 % of 20 echoes come back; never all, never none.
    assert 4 <= lossy["received"] <= 19, lossy


def test_partition_link_down_crash_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(FAULTS)
    done = subprocess.run([*P2PLAB, "run", str(path), "--backend", "netns", "--results",
                           str(tmp_path / "results")], capture_output=True, text=True,
                          timeout=240)
    run_dir = next((tmp_path / "results").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    timeline = next(v for v in summary["verdicts"] if v["name"] == "timeline completed")
    assert timeline["passed"], (timeline, done.stderr[-2000:])
    faults = [r["action"] for r in summary["recovery"]]
    assert faults == ["partition", "heal", "link-down", "link-up", "kill", "restart"]
    events = [json.loads(line)
              for line in (run_dir / "events" / "n-4.jsonl").read_text().splitlines()]
    starts = [e for e in events if e["type"] == "node_started"]
    assert len(starts) == 2 and starts[0]["peer_id"] == starts[1]["peer_id"]
    flows = summary["delivery"]["per_flow"]
    # The long flow was stopped early: fewer than its 200 messages went out.
    assert 20 < flows["long"]["messages_published"] < 200
    # n-1 published to n-3..n-5 during the partition: unreachable, but within its own
    # side every message arrived.
    assert flows["long"]["reachable_delivery_ratio"] >= 0.95
    assert flows["after"]["delivery_ratio"] == 1.0
    for r in summary["recovery"]:
        assert r["recovery_ms"] is not None, r
    # The restarted node receives again.
    got = [e for e in events if e["type"] == "message_received" and e["t"] > starts[1]["t"]]
    assert got


def test_broken_scenarios_create_nothing(tmp_path: Path) -> None:
    broken = Path(__file__).parent / "broken"
    for name in ("unreachable-connect.yaml", "partition-splits-nat.yaml",
                 "lan-pool-too-small.yaml"):
        done = subprocess.run([*P2PLAB, "run", str(broken / name), "--backend", "netns",
                               "--results", str(tmp_path / "results")],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert f"{broken / name}:" in done.stderr
        assert not (tmp_path / "results").exists()
