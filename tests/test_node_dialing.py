"""The py node's dial logic with a fake dialler on trio's mock clock: retries until the
peer answers or --dial-timeout passes, one ``dial`` event either way, and a persistent
peer dialled again once every connection to it is gone."""

from __future__ import annotations

import io
from typing import Any

import pytest
import trio
from multiaddr import Multiaddr
from p2plab.node import dialing
from p2plab.node.config import NodeConfig, parse_args
from p2plab.node.dialing import Dialing
from trio.testing import MockClock

pytestmark = pytest.mark.quick

PEER = "12D3KooWMoemNKZz9uRE8bw2VFZpPJ3QqUhFj95ALxJA6bgEMccy"
ADDR = Multiaddr(f"/ip4/203.0.113.4/tcp/4001/p2p/{PEER}")


class FakeDialer(Dialing):
    """A node whose dials fail ``failures`` times, then connect; connections drop when
    the test says so."""

    def __init__(self, config: NodeConfig, failures: int) -> None:
        self.config = config
        self.events = None
        self.out = io.StringIO()
        self.emitted: list[dict[str, Any]] = []
        self.failures = failures
        self.dials = 0
        self.connected = False

    def emit(self, type_: str, **fields: Any) -> None:
        self.emitted.append({"type": type_, **fields})

    async def dial(self, addr: Multiaddr) -> None:
        self.dials += 1
        if self.dials <= self.failures:
            raise ConnectionRefusedError("not listening yet")
        self.connected = True

    def _connected_to(self, peer: Any) -> bool:
        return self.connected


@pytest.fixture(autouse=True)
def trio_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The node's own timing (time.monotonic) on trio's clock, so the mock clock runs it."""
    monkeypatch.setattr(dialing.time, "monotonic", trio.current_time)


def config(timeout: float) -> NodeConfig:
    return parse_args(["--name", "n", "--dial-timeout", str(timeout)])


def run(coroutine: Any) -> Any:
    return trio.run(lambda: coroutine, clock=MockClock(autojump_threshold=0))


def test_a_dial_is_retried_until_the_peer_answers() -> None:
    node = FakeDialer(config(30), failures=3)
    assert run(node._dial_with_retry(ADDR)) is True
    (event,) = node.emitted
    assert event["type"] == "dial" and event["outcome"] == "ok" and event["attempts"] == 4
    assert event["reason"] == "" and event["elapsed_ms"] == pytest.approx(3000, abs=1)


def test_a_dial_gives_up_after_the_dial_timeout_and_says_why() -> None:
    node = FakeDialer(config(5), failures=1000)
    assert run(node._dial_with_retry(ADDR)) is False
    (event,) = node.emitted
    assert event["outcome"] == "failed" and "ConnectionRefusedError" in event["reason"]
    assert 5 <= node.dials <= 7  # one a second, until 5 s have passed
    assert "dial /ip4/203.0.113.4/tcp/4001" in node.out.getvalue()


def test_a_persistent_peer_is_dialled_again_when_its_connections_are_gone() -> None:
    node = FakeDialer(config(30), failures=0)

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node._keep_dialed, ADDR)
            await trio.sleep(5)
            assert node.dials == 1
            node.connected = False  # the peer crashed
            await trio.sleep(5)
            assert node.dials == 2 and node.connected
            nursery.cancel_scope.cancel()

    run(scenario())
    assert [e["outcome"] for e in node.emitted] == ["ok", "ok"]
