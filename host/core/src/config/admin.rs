//! `admin`: the HTTP listener for metrics and probes.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::Problems;

/// Admin HTTP listener (metrics, probes): loopback unless moved (`FLOWGATE_ADMIN_LISTEN`, `admin.listen`), since
/// it has no authentication. The Helm chart moves it to every address of the pod for probes and scraping.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// `addr:port` for `/metrics`, `/healthz`, `/readyz`.
    pub listen: Option<String>,
}

impl RawAdmin {
    pub(super) fn resolve(self, p: &mut Problems) -> SocketAddr {
        let text = self.listen.unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_string());
        text.parse().unwrap_or_else(|e| {
            p.at("admin.listen", format!("{text:?} is not addr:port (e.g. 0.0.0.0:9090): {e}"));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }
}
