//! The event log: schema v1 JSON lines (p2plab/events.py), flushed line by line so a
//! node killed with SIGKILL still leaves a readable log up to its last event.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

pub const SCHEMA_VERSION: u64 = 1;

pub struct EventLog {
    node: String,
    file: Option<File>,
}

impl EventLog {
    pub fn open(node: &str, path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Some(OpenOptions::new().create(true).append(true).open(p)?)
            }
            None => None,
        };
        Ok(Self { node: node.to_string(), file })
    }

    /// Write one event: the envelope (v, t, node, type) and the given fields.
    pub fn emit(&mut self, type_: &str, fields: Value) {
        let Some(file) = self.file.as_mut() else { return };
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let mut event = Map::new();
        event.insert("v".into(), SCHEMA_VERSION.into());
        event.insert("t".into(), Value::from(t));
        event.insert("node".into(), self.node.clone().into());
        event.insert("type".into(), type_.into());
        if let Value::Object(extra) = fields {
            event.extend(extra);
        }
        let mut line = Value::Object(event).to_string();
        line.push('\n');
        // One write call per line: the line reaches the file whole or not at all.
        let _ = file.write_all(line.as_bytes());
    }
}
