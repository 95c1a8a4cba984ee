//! The `--relay-limits` value (p2plab/relay_limits.py is the same grammar in Python):
//! `unlimited`, or `KEY=VALUE` pairs separated by commas, each overriding one of the
//! relay library's defaults. Without the flag a relay runs those defaults, as shipped.

/// What `--relay-limits` asked for; a `None` field keeps the library's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelayLimits {
    pub unlimited: bool,
    pub reservations: Option<u64>,
    pub reservations_per_peer: Option<u64>,
    /// Seconds.
    pub reservation_duration: Option<u64>,
    pub circuits: Option<u64>,
    pub circuits_per_peer: Option<u64>,
    /// Seconds.
    pub circuit_duration: Option<u64>,
    pub circuit_bytes: Option<u64>,
    /// The library's default reservation and circuit rate limits, on or off.
    pub rate_limits: Option<bool>,
}

pub const KEYS: [&str; 8] = [
    "reservations",
    "reservations-per-peer",
    "reservation-duration",
    "circuits",
    "circuits-per-peer",
    "circuit-duration",
    "circuit-bytes",
    "rate-limits",
];

/// Parse a `--relay-limits` value; the error is the whole one-line message.
pub fn parse(text: &str) -> Result<RelayLimits, String> {
    if text == "unlimited" {
        return Ok(RelayLimits {
            unlimited: true,
            ..RelayLimits::default()
        });
    }
    let mut limits = RelayLimits::default();
    let mut seen: Vec<&str> = Vec::new();
    for part in text.split(',') {
        let Some((key, value)) = part.split_once('=') else {
            return Err(bad_pair(part));
        };
        if !KEYS.contains(&key) {
            return Err(bad_pair(part));
        }
        if seen.contains(&key) {
            return Err(format!("--relay-limits: {key} is given twice"));
        }
        seen.push(key);
        if key == "rate-limits" {
            limits.rate_limits = Some(match value {
                "on" => true,
                "off" => false,
                _ => return Err(format!("--relay-limits {key}={value:?}: give on or off")),
            });
            continue;
        }
        let number = value
            .parse::<u64>()
            .ok()
            .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                format!("--relay-limits {key}={value:?}: give a whole number (0 or more)")
            })?;
        let slot = match key {
            "reservations" => &mut limits.reservations,
            "reservations-per-peer" => &mut limits.reservations_per_peer,
            "reservation-duration" => &mut limits.reservation_duration,
            "circuits" => &mut limits.circuits,
            "circuits-per-peer" => &mut limits.circuits_per_peer,
            "circuit-duration" => &mut limits.circuit_duration,
            _ => &mut limits.circuit_bytes,
        };
        *slot = Some(number);
    }
    Ok(limits)
}

fn bad_pair(part: &str) -> String {
    format!(
        "--relay-limits {part:?}: give unlimited or KEY=VALUE pairs, KEY one of {}",
        KEYS.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_stands_alone() {
        assert!(parse("unlimited").unwrap().unlimited);
        assert!(parse("unlimited,circuits=1").is_err());
    }

    #[test]
    fn pairs_override_what_they_name() {
        let limits = parse("circuit-bytes=0,circuit-duration=120,rate-limits=off").unwrap();
        assert_eq!(limits.circuit_bytes, Some(0));
        assert_eq!(limits.circuit_duration, Some(120));
        assert_eq!(limits.rate_limits, Some(false));
        assert_eq!(limits.circuits, None);
        assert!(!limits.unlimited);
    }

    #[test]
    fn bad_values_are_refused() {
        for text in [
            "circuits=-1",
            "circuits=+1",
            "circuits=",
            "speed=3",
            "circuits=1,circuits=2",
            "rate-limits=yes",
            "",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
