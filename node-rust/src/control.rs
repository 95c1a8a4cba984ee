//! The control channel: JSON lines from a FIFO (docs/node-contract.md). The FIFO is
//! opened read-write so the lab can open, write and close it as often as it likes.

use std::path::Path;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// Required fields of each command.
pub fn required(cmd: &str) -> Option<&'static [&'static str]> {
    Some(match cmd {
        "publish" => &["count", "size", "rate"],
        "stop-traffic" => &["flow"],
        "say" => &["text"],
        "dial" => &["addr"],
        "ping" => &["peer"],
        "quit" => &[],
        _ => return None,
    })
}

/// Parse one line into a command object, or say in one sentence what is wrong.
pub fn parse(line: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let cmd = value.get("cmd").and_then(Value::as_str).unwrap_or("");
    let Some(fields) = required(cmd) else {
        return Err("expected an object with cmd in [dial, ping, publish, quit, say, stop-traffic]".into());
    };
    let missing: Vec<&str> = fields.iter().copied().filter(|f| value.get(*f).is_none()).collect();
    if !missing.is_empty() {
        return Err(format!("{cmd} needs {missing:?}"));
    }
    Ok(value)
}

fn make_fifo(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_fifo() => Ok(()),
        Ok(_) => Err(std::io::Error::other(format!("{} exists and is not a FIFO", path.display()))),
        Err(_) => {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        }
    }
}

/// Read lines from the FIFO forever, handing each to the node's event loop.
pub async fn read_fifo(path: std::path::PathBuf, lines: mpsc::UnboundedSender<String>) -> std::io::Result<()> {
    make_fifo(&path)?;
    let receiver = tokio::net::unix::pipe::OpenOptions::new().read_write(true).open_receiver(&path)?;
    let mut reader = BufReader::new(receiver).lines();
    while let Some(line) = reader.next_line().await? {
        if lines.send(line).is_err() {
            break;
        }
    }
    Ok(())
}
