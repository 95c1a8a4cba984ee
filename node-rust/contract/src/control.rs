//! The control channel: JSON lines from a FIFO (docs/reference/node-contract.md). The
//! FIFO is opened read-write so the lab can open, write and close it as often as it
//! likes.
//!
//! A line becomes a [`Request`]: a typed [`Command`] plus the line's JSON object, which
//! the node echoes as `args` in the command's `command` event. Field values are read as
//! leniently as the contract's other implementations read them: a field that must be
//! present is checked for presence only (a value of the wrong type is the command's own
//! failure, or its default), so every command still ends in a `command` event.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// One command of the control channel; `cmd` names the variant.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Command {
    /// Publish at the given offsets (seconds from receipt), else `count` at `rate`/s.
    Publish(Publish),
    /// End running publish plans of `flow` (`all`: every plan).
    StopTraffic {
        #[serde(deserialize_with = "lenient::string")]
        flow: String,
    },
    /// Publish one chat line.
    Say {
        #[serde(deserialize_with = "lenient::string")]
        text: String,
    },
    /// Dial a multiaddr (retried until --dial-timeout).
    Dial {
        #[serde(deserialize_with = "lenient::string")]
        addr: String,
    },
    /// Complete with the next `count` pings of a connected peer.
    Ping {
        #[serde(deserialize_with = "lenient::string")]
        peer: String,
        #[serde(
            default,
            deserialize_with = "lenient::whole",
            skip_serializing_if = "Option::is_none"
        )]
        count: Option<u64>,
    },
    /// Stop the node (node_stopped with reason quit).
    Quit,
}

/// The fields of `publish`. `None` in a required field means a value of the wrong type.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Publish {
    #[serde(deserialize_with = "lenient::whole")]
    pub count: Option<u64>,
    #[serde(deserialize_with = "lenient::whole")]
    pub size: Option<u64>,
    #[serde(deserialize_with = "lenient::number")]
    pub rate: Option<f64>,
    /// When a list: each entry a number (`None`: it was not one).
    #[serde(
        default,
        deserialize_with = "lenient::numbers",
        skip_serializing_if = "Option::is_none"
    )]
    pub offsets: Option<Vec<Option<f64>>>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub topic: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub flow: Option<String>,
}

impl Command {
    /// The command's name, as `cmd` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Publish(_) => "publish",
            Command::StopTraffic { .. } => "stop-traffic",
            Command::Say { .. } => "say",
            Command::Dial { .. } => "dial",
            Command::Ping { .. } => "ping",
            Command::Quit => "quit",
        }
    }
}

/// A command and the JSON object it came as (echoed as the `args` of its events).
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub command: Command,
    pub args: Value,
}

impl Request {
    /// A command made by the node itself (a typed `/dial` or `/ping`): its args are the
    /// command's own JSON.
    pub fn new(command: Command) -> Self {
        let args = serde_json::to_value(&command).expect("a command serialises");
        Self { command, args }
    }
}

/// Every command with its required fields, in the order `needs [...]` lists them.
const COMMANDS: &[(&str, &[&str])] = &[
    ("publish", &["count", "size", "rate"]),
    ("stop-traffic", &["flow"]),
    ("say", &["text"]),
    ("dial", &["addr"]),
    ("ping", &["peer"]),
    ("quit", &[]),
];

const NOT_A_COMMAND: &str =
    "expected an object with cmd in [dial, ping, publish, quit, say, stop-traffic]";

/// Required fields of each command.
pub fn required(cmd: &str) -> Option<&'static [&'static str]> {
    COMMANDS
        .iter()
        .find(|(name, _)| *name == cmd)
        .map(|(_, fields)| *fields)
}

/// Parse one line into a request, or say in one sentence what is wrong.
pub fn parse(line: &str) -> Result<Request, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    parse_value(value)
}

/// A JSON value as a request: an object with a known `cmd` and its required fields.
pub fn parse_value(value: Value) -> Result<Request, String> {
    let cmd = value.get("cmd").and_then(Value::as_str).unwrap_or("");
    let Some(fields) = required(cmd) else {
        return Err(NOT_A_COMMAND.into());
    };
    let missing: Vec<&str> = fields
        .iter()
        .copied()
        .filter(|f| value.get(*f).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!("{cmd} needs {missing:?}"));
    }
    // Cannot fail: the tag is known, required fields are there, values are lenient.
    let command = Command::deserialize(&value).map_err(|e| format!("{cmd}: {e}"))?;
    Ok(Request {
        command,
        args: value,
    })
}

/// Field readers that take any JSON value, as serde_json's `Value::as_*` read them.
mod lenient {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// A string, or "" for anything else.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Value::deserialize(d)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// A string, or None for anything else.
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Value::deserialize(d)?.as_str().map(str::to_string))
    }

    /// A non-negative integer, or None for anything else (2.0 and -1 included).
    pub fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(Value::deserialize(d)?.as_u64())
    }

    /// Any number, or None for anything else.
    pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Ok(Value::deserialize(d)?.as_f64())
    }

    /// A list (each entry a number or None), or None when not a list.
    pub fn numbers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Option<f64>>>, D::Error> {
        Ok(Value::deserialize(d)?
            .as_array()
            .map(|list| list.iter().map(Value::as_f64).collect()))
    }
}

fn make_fifo(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_fifo() => Ok(()),
        Ok(_) => Err(std::io::Error::other(format!(
            "{} exists and is not a FIFO",
            path.display()
        ))),
        Err(_) => {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(std::io::Error::other)?;
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        }
    }
}

/// Read lines from the FIFO forever, handing each to the node's event loop.
pub async fn read_fifo(
    path: std::path::PathBuf,
    lines: mpsc::UnboundedSender<String>,
) -> std::io::Result<()> {
    make_fifo(&path)?;
    let receiver = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&path)?;
    let mut reader = BufReader::new(receiver).lines();
    while let Some(line) = reader.next_line().await? {
        if lines.send(line).is_err() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(line: &str) -> Request {
        parse(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn err(line: &str) -> String {
        match parse(line) {
            Ok(request) => panic!("{line} parsed as {request:?}"),
            Err(reason) => reason,
        }
    }

    #[test]
    fn publish_with_every_field() {
        let line = r#"{"cmd":"publish","count":3,"size":300,"rate":40,"offsets":[0,0.5,1],"topic":"t","flow":"f"}"#;
        let request = ok(line);
        assert_eq!(
            request.command,
            Command::Publish(Publish {
                count: Some(3),
                size: Some(300),
                rate: Some(40.0),
                offsets: Some(vec![Some(0.0), Some(0.5), Some(1.0)]),
                topic: Some("t".into()),
                flow: Some("f".into()),
            })
        );
        assert_eq!(request.command.name(), "publish");
        // args: the object as received.
        assert_eq!(request.args, serde_json::from_str::<Value>(line).unwrap());
    }

    #[test]
    fn publish_fields_of_the_wrong_type_reach_the_command() {
        let request = ok(r#"{"cmd":"publish","count":-1,"size":2.0,"rate":"x","offsets":"no"}"#);
        let Command::Publish(publish) = request.command else {
            panic!("not a publish");
        };
        assert_eq!(publish.count, None);
        assert_eq!(publish.size, None);
        assert_eq!(publish.rate, None);
        assert_eq!(publish.offsets, None);
        let request =
            ok(r#"{"cmd":"publish","count":1,"size":1,"rate":1,"offsets":[1,"a"],"topic":5}"#);
        let Command::Publish(publish) = request.command else {
            panic!("not a publish");
        };
        assert_eq!(publish.offsets, Some(vec![Some(1.0), None]));
        assert_eq!(publish.topic, None);
        assert_eq!(publish.flow, None);
    }

    #[test]
    fn every_command_parses_with_its_required_fields() {
        let cases = [
            (
                r#"{"cmd":"stop-traffic","flow":"all"}"#,
                Command::StopTraffic { flow: "all".into() },
            ),
            (
                r#"{"cmd":"say","text":"hello"}"#,
                Command::Say {
                    text: "hello".into(),
                },
            ),
            (
                r#"{"cmd":"dial","addr":"/ip4/127.0.0.1/tcp/1"}"#,
                Command::Dial {
                    addr: "/ip4/127.0.0.1/tcp/1".into(),
                },
            ),
            (
                r#"{"cmd":"ping","peer":"12D3KooW"}"#,
                Command::Ping {
                    peer: "12D3KooW".into(),
                    count: None,
                },
            ),
            (
                r#"{"cmd":"ping","peer":"12D3KooW","count":3}"#,
                Command::Ping {
                    peer: "12D3KooW".into(),
                    count: Some(3),
                },
            ),
            (r#"{"cmd":"quit"}"#, Command::Quit),
            // Extra fields are ignored, also by a command without fields.
            (r#"{"cmd":"quit","why":"done","n":[1]}"#, Command::Quit),
            // Present but not a string: "" as before (null counts as present).
            (
                r#"{"cmd":"say","text":null}"#,
                Command::Say { text: "".into() },
            ),
            (
                r#"{"cmd":"stop-traffic","flow":7}"#,
                Command::StopTraffic { flow: "".into() },
            ),
        ];
        for (line, command) in cases {
            let request = ok(line);
            assert_eq!(request.command, command, "{line}");
            assert_eq!(Some(request.command.name()), request.args["cmd"].as_str());
        }
    }

    #[test]
    fn the_table_names_every_variant() {
        for (name, fields) in COMMANDS {
            let mut object = serde_json::Map::new();
            object.insert("cmd".into(), (*name).into());
            for field in *fields {
                object.insert((*field).into(), json!(1));
            }
            let request = parse_value(Value::Object(object)).expect(name);
            assert_eq!(request.command.name(), *name);
        }
    }

    #[test]
    fn unknown_commands_and_non_objects_are_refused_with_the_list() {
        for line in [
            r#"{"cmd":"frobnicate"}"#,
            r#"{"cmd":"Publish","count":1,"size":1,"rate":1}"#,
            r#"{"cmd":5}"#,
            r#"{"text":"no cmd"}"#,
            r#"["cmd","quit"]"#,
            r#""quit""#,
            "3",
            "null",
        ] {
            assert_eq!(err(line), NOT_A_COMMAND, "{line}");
        }
        assert!(NOT_A_COMMAND.contains("cmd in"));
    }

    #[test]
    fn missing_fields_are_all_named() {
        assert_eq!(
            err(r#"{"cmd":"publish"}"#),
            r#"publish needs ["count", "size", "rate"]"#
        );
        assert_eq!(
            err(r#"{"cmd":"publish","size":1}"#),
            r#"publish needs ["count", "rate"]"#
        );
        assert_eq!(err(r#"{"cmd":"say"}"#), r#"say needs ["text"]"#);
        assert_eq!(err(r#"{"cmd":"dial"}"#), r#"dial needs ["addr"]"#);
        assert_eq!(err(r#"{"cmd":"ping","count":2}"#), r#"ping needs ["peer"]"#);
        assert_eq!(
            err(r#"{"cmd":"stop-traffic"}"#),
            r#"stop-traffic needs ["flow"]"#
        );
    }

    #[test]
    fn a_line_that_is_not_json_says_so() {
        let reason = err("{oops");
        assert!(reason.starts_with("not JSON: "), "{reason}");
        assert!(err("").starts_with("not JSON: "));
    }

    #[test]
    fn a_command_made_by_the_node_echoes_its_own_json() {
        let request = Request::new(Command::Dial {
            addr: "/ip4/1.2.3.4/tcp/1".into(),
        });
        assert_eq!(
            request.args,
            json!({"cmd": "dial", "addr": "/ip4/1.2.3.4/tcp/1"})
        );
        let request = Request::new(Command::Ping {
            peer: "p".into(),
            count: Some(1),
        });
        assert_eq!(
            request.args,
            json!({"cmd": "ping", "peer": "p", "count": 1})
        );
        // And it reads back as the same command.
        assert_eq!(parse_value(request.args).unwrap().command, request.command);
    }

    #[test]
    fn a_long_schedule_parses() {
        let offsets: Vec<f64> = (0..40_000).map(|i| 3600.0 + i as f64 / 1000.0).collect();
        let line = json!({"cmd": "publish", "count": offsets.len(), "size": 10, "rate": 1,
                          "offsets": offsets, "flow": "long"})
        .to_string();
        let Command::Publish(publish) = ok(&line).command else {
            panic!("not a publish");
        };
        assert_eq!(publish.offsets.map(|o| o.len()), Some(40_000));
    }
}
