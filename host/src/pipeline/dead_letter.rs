//! Where the `dead-letter` failure policy sets flows aside: a JSON-lines file (`transforms.dead_letter_path`), or
//! the dead-letter OTLP stream (`dead_letter.endpoint`, [`crate::dead_letter`]). Neither makes a worker wait on
//! the network: the file is local, the stream takes what fits in its bounded channel and counts the rest.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::chain::Entry;
use crate::dead_letter::DeadLetterStream;
use crate::proto::Flow;
use crate::render;

pub enum DeadLetter {
    /// JSON lines `{transform, digest, error, flow}`.
    File {
        path: PathBuf,
        file: Mutex<Option<std::fs::File>>,
    },
    Stream(Arc<DeadLetterStream>),
}

impl DeadLetter {
    /// To the file at `path` (opened, created if need be, at the first dead letter).
    pub fn new(path: PathBuf) -> Self {
        DeadLetter::File { path, file: Mutex::new(None) }
    }

    pub fn stream(stream: Arc<DeadLetterStream>) -> Self {
        DeadLetter::Stream(stream)
    }

    pub(super) fn write(&self, entry: &Entry, error: &str, flow: &Flow) {
        let digest = format!("sha256:{}", entry.component.digest);
        let (path, file) = match self {
            DeadLetter::Stream(s) => {
                return s.transform_failure(&entry.spec.name, &digest, error, render::flow_json_string(flow));
            }
            DeadLetter::File { path, file } => (path, file),
        };
        let line = serde_json::json!({
            "transform": entry.spec.name,
            "digest": digest,
            "error": error,
            "flow": serde_json::from_str::<serde_json::Value>(&render::flow_json_string(flow)).unwrap_or_default(),
        });
        let mut guard = file.lock().expect("dead-letter lock");
        if guard.is_none() {
            match std::fs::OpenOptions::new().create(true).append(true).open(path) {
                Ok(f) => *guard = Some(f),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot open the transform dead-letter file");
                    return;
                }
            }
        }
        if let Some(f) = guard.as_mut()
            && let Err(e) = writeln!(f, "{line}")
        {
            tracing::error!(path = %path.display(), error = %e, "cannot write the transform dead-letter file");
        }
    }
}
