"""The contract's ``--relay-limits`` value: what a relay hop may carry, as the lab asks it.

Without the flag a relay runs its library's own defaults (rust-libp2p: 128 reservations,
16 circuits, 2 min and 128 KiB per circuit, rate limits per peer and per IP), as a relay
in the field does. ``unlimited`` sizes it for a lab that must not be limited by its
relay (many thousand reservations and circuits, a day and 2^40 bytes per circuit, no
rate limits). Otherwise the value is ``KEY=VALUE`` pairs separated by commas, each one
overriding that library default: the scenario's ``relay_limits`` mapping renders here,
every node parses here (Python) or in the Rust kit's ``relay_limits`` module.

A value of 0 is passed to the library as 0: the relay v2 spec reads it as "no limit";
libraries have not always agreed (rust-libp2p#5170), which is what a lab can show.
"""

from __future__ import annotations

from dataclasses import dataclass

UNLIMITED = "unlimited"
# Flag key -> what it limits. Durations are whole seconds, sizes bytes.
KEYS: dict[str, str] = {
    "reservations": "reservations the relay holds at once",
    "reservations-per-peer": "reservations one peer may hold",
    "reservation-duration": "seconds a reservation lasts before it must be renewed",
    "circuits": "circuits the relay carries at once",
    "circuits-per-peer": "circuits one destination peer may have at once",
    "circuit-duration": "seconds a circuit lasts before the relay cuts it",
    "circuit-bytes": "bytes (both ways) a circuit carries before the relay cuts it",
    "rate-limits": "on/off: the library's default reservation and circuit rate limits",
}
SWITCHES = ("rate-limits",)


class RelayLimitsError(ValueError):
    """A ``--relay-limits`` value that cannot be read; the message is the whole line."""


@dataclass(frozen=True)
class RelayLimits:
    """``unlimited``, or overrides of the library's defaults (absent: the default)."""

    unlimited: bool = False
    overrides: tuple[tuple[str, int | bool], ...] = ()

    def get(self, key: str) -> int | bool | None:
        return dict(self.overrides).get(key)

    def asks(self) -> tuple[str, ...]:
        """What the value asks of an implementation (``unlimited`` or its keys)."""
        return (UNLIMITED,) if self.unlimited else tuple(k for k, _ in self.overrides)

    def render(self) -> str:
        if self.unlimited:
            return UNLIMITED
        return ",".join(f"{k}={_value_text(v)}" for k, v in self.overrides)


def _value_text(value: int | bool) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def parse(text: str) -> RelayLimits:
    """Read a ``--relay-limits`` value; a bad one raises ``RelayLimitsError``."""
    if text == UNLIMITED:
        return RelayLimits(unlimited=True)
    overrides: dict[str, int | bool] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if key == UNLIMITED:
            raise RelayLimitsError("--relay-limits: unlimited stands alone, without KEY=VALUE")
        if not sep or key not in KEYS:
            raise RelayLimitsError(
                f"--relay-limits {part!r}: give unlimited or KEY=VALUE pairs, KEY one of "
                f"{', '.join(KEYS)}")
        if key in overrides:
            raise RelayLimitsError(f"--relay-limits: {key} is given twice")
        if key in SWITCHES:
            if value not in ("on", "off"):
                raise RelayLimitsError(f"--relay-limits {key}={value!r}: give on or off")
            overrides[key] = value == "on"
        elif value.isdigit() and len(value) <= 19:
            overrides[key] = int(value)
        else:
            raise RelayLimitsError(
                f"--relay-limits {key}={value!r}: give a whole number of "
                f"{'seconds' if 'duration' in key else 'bytes' if 'bytes' in key else 'slots'}"
                " (0 or more)")
    return RelayLimits(overrides=tuple(overrides.items()))
