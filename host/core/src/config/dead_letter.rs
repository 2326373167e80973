//! `dead_letter`: a second OTLP/HTTP logs endpoint for the flows the `dead-letter` failure policy sets aside and
//! the records the main endpoint rejects permanently, instead of the JSON-lines files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::otlp::{http_url, is_header_name};
use super::{Problems, TlsFiles};

/// Dead letters waiting to be sent; past it new ones are dropped and counted (the data path never waits).
pub const DEFAULT_DEAD_LETTER_MAX_RECORDS: usize = 10_000;
/// Records per request to the dead-letter endpoint.
pub const DEAD_LETTER_BATCH_RECORDS: usize = 512;

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawDeadLetter {
    /// Full OTLP/HTTP logs URL, used as is (`FLOWGATE_DEAD_LETTER_ENDPOINT`). Off when absent.
    pub endpoint: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub timeout_ms: Option<u64>,
    pub ca_cert_path: Option<PathBuf>,
    pub client_cert_path: Option<PathBuf>,
    pub client_key_path: Option<PathBuf>,
    /// Dead letters held while the endpoint is slow or down (default 10000).
    pub max_records: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct DeadLetterConfig {
    pub endpoint: url::Url,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub tls: TlsFiles,
    pub max_records: usize,
}

impl RawDeadLetter {
    /// `None` without an endpoint; the timeout defaults to the main endpoint's.
    pub(super) fn resolve(self, default_timeout: Duration, p: &mut Problems) -> Option<DeadLetterConfig> {
        let Some(text) = self.endpoint else {
            for (set, path) in [
                (!self.headers.is_empty(), "dead_letter.headers"),
                (self.ca_cert_path.is_some(), "dead_letter.ca_cert_path"),
                (self.max_records.is_some(), "dead_letter.max_records"),
            ] {
                if set {
                    p.at(path, "has no effect without dead_letter.endpoint");
                }
            }
            return None;
        };
        // Every problem is reported, so the rest is checked even when the URL is not one.
        let endpoint = http_url(&text, "dead_letter.endpoint", p);
        for k in self.headers.keys() {
            if !is_header_name(k) {
                p.at("dead_letter.headers", format!("{k:?} is not a valid header name"));
            }
        }
        let tls = TlsFiles {
            ca_cert: self.ca_cert_path,
            client_cert: self.client_cert_path,
            client_key: self.client_key_path,
        };
        if tls.client_cert.is_some() != tls.client_key.is_some() {
            let set =
                if tls.client_cert.is_some() { "dead_letter.client_cert_path" } else { "dead_letter.client_key_path" };
            p.at(set, "a client certificate and a client key go together: set both or neither");
        }
        let max_records = self.max_records.unwrap_or(DEFAULT_DEAD_LETTER_MAX_RECORDS);
        if max_records == 0 {
            p.at("dead_letter.max_records", "must be at least 1");
        }
        Some(DeadLetterConfig {
            endpoint: endpoint?,
            headers: self.headers.into_iter().collect(),
            timeout: self.timeout_ms.map_or(default_timeout, |ms| Duration::from_millis(ms.max(1))),
            tls,
            max_records: max_records.max(1),
        })
    }
}
