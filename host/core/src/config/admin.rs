//! `admin`: the HTTP listener for metrics and probes, and the live tap (`flowgate tap`, `flowgate capture
//! --admin`) through it.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::Problems;

/// Admin HTTP listener (metrics, probes): loopback unless moved (`FLOWGATE_ADMIN_LISTEN`, `admin.listen`), since
/// it has no authentication. The Helm chart moves it to every address of the pod for probes and scraping.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Records a second one tap may show unless it asks for fewer (`admin.tap.max_per_second`).
pub const DEFAULT_TAP_MAX_PER_SECOND: u32 = 100;

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// `addr:port` for `/metrics`, `/healthz`, `/readyz` (and `/tap`, `/capture` when the tap is enabled).
    pub listen: Option<String>,
    pub tap: RawTap,
}

/// The live tap: off unless enabled. It shows flows and records to whoever reaches the admin port, so it stays
/// off where that port is not loopback-only or otherwise guarded.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawTap {
    /// Serve `/tap` (records after a stage of the chain) and `/capture` (flows as Goldmane sent them).
    pub enabled: Option<bool>,
    /// Allow tapping at a point a redaction stage comes after (`/capture` included, which reads flows before
    /// the chain). Off: what a redaction removes is never shown.
    pub before_redaction: Option<bool>,
    /// Chain entries that count as redactions, besides any whose name or file name contains `redact`.
    pub redactions: Vec<String>,
    /// Serve the tap to clients from other addresses than loopback (the chart's admin port listens on every
    /// address of the pod for probes; `kubectl port-forward` arrives on loopback).
    pub allow_remote: Option<bool>,
    /// The most records a second one tap may show (it may ask for fewer).
    pub max_per_second: Option<u32>,
}

/// The resolved tap settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    pub enabled: bool,
    pub before_redaction: bool,
    pub redactions: Vec<String>,
    pub allow_remote: bool,
    pub max_per_second: u32,
}

impl RawAdmin {
    pub(super) fn resolve(self, p: &mut Problems) -> (SocketAddr, TapConfig) {
        let text = self.listen.unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_string());
        let listen = text.parse().unwrap_or_else(|e| {
            p.at("admin.listen", format!("{text:?} is not addr:port (e.g. 0.0.0.0:9090): {e}"));
            SocketAddr::from(([127, 0, 0, 1], 0))
        });
        let t = self.tap;
        let max_per_second = t.max_per_second.unwrap_or(DEFAULT_TAP_MAX_PER_SECOND);
        if max_per_second == 0 {
            p.at("admin.tap.max_per_second", "must be at least 1 (disable the tap with admin.tap.enabled: false)");
        }
        let tap = TapConfig {
            enabled: t.enabled.unwrap_or(false),
            before_redaction: t.before_redaction.unwrap_or(false),
            redactions: t.redactions,
            allow_remote: t.allow_remote.unwrap_or(false),
            max_per_second,
        };
        (listen, tap)
    }
}
