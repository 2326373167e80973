//! `goldmane`: where the stream comes from (address, TLS, reconnects, keepalive), its server-side filter, and the
//! reconciliation of late flows.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::env::{ENV_CA_CERT_PATH, ENV_GOLDMANE_HOST, ENV_PRIVATE_KEY_PATH, ENV_PUBLIC_CERT_PATH};
use super::{Problems, TlsFiles};

/// Default initial reconnect wait, as the old exporter's `RECONNECT_WAIT_TIME_IN_MILLISECONDS`.
pub const DEFAULT_RECONNECT_INITIAL_MS: u64 = 5_000;
/// Reconnect backoff cap.
pub const DEFAULT_RECONNECT_MAX_MS: u64 = 60_000;
/// Goldmane answers pings more often than every 5 minutes with GOAWAY `too_many_pings`.
pub const MIN_KEEPALIVE_INTERVAL_MS: u64 = 300_000;
/// Default reconciliation window: Felix's 5-minute replay plus two buckets.
pub const DEFAULT_RECONCILE_WINDOW_SECS: u64 = 330;
/// Default reconciliation passes, seconds after a bucket was streamed.
pub const DEFAULT_RECONCILE_PASSES_SECS: [u64; 3] = [10, 60, 300];
/// Default `List` page size.
pub const DEFAULT_RECONCILE_PAGE_SIZE: u64 = 5_000;

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawGoldmane {
    /// `host:port` of Goldmane (`GOLDMANE_HOST`).
    pub host: Option<String>,
    /// TLS server name; defaults to the host part of `host`.
    pub server_name: Option<String>,
    /// PEM CA bundle (`CA_CERT_PATH`).
    pub ca_cert_path: Option<PathBuf>,
    /// Client certificate (`PUBLIC_CERT_PATH`).
    pub client_cert_path: Option<PathBuf>,
    /// Client key, PKCS#1, PKCS#8 or SEC1 (`PRIVATE_KEY_PATH`).
    pub client_key_path: Option<PathBuf>,
    pub reconnect_initial_ms: Option<u64>,
    pub reconnect_max_ms: Option<u64>,
    /// HTTP/2 keepalive ping interval; at least 300000 (Goldmane's ping policy). Off when absent.
    pub keepalive_interval_ms: Option<u64>,
    /// First connection's `start_time_gte`: 0 = now, < 0 = seconds back (at most 3585), > 0 = epoch seconds.
    pub start_time_gte: Option<i64>,
    pub filter: Option<FilterConfig>,
    /// Finding the flows Goldmane never streams live (they reached it after their bucket was streamed).
    pub reconcile: RawReconcile,
}

/// Reconciliation of late flows with `Flows/List`.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawReconcile {
    /// On by default (`FLOWGATE_RECONCILE=false` turns it off).
    pub enabled: Option<bool>,
    /// How far back buckets are reconciled, in seconds (default 330: Felix re-sends its last 5 minutes).
    pub window_secs: Option<u64>,
    /// When each bucket is listed again, in seconds after Goldmane streamed it (default 10, 60, 300).
    pub passes_secs: Option<Vec<u64>>,
    /// A key already exported whose counters grew: `delta` (default) exports the difference as its own record
    /// (attribute `flowgate.reconciled=delta`), `ignore` only counts it.
    pub growth: Option<Growth>,
    /// Flows per `List` page (default 5000).
    pub page_size: Option<u64>,
}

/// What reconciliation does when a key already exported grows.
#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Growth {
    #[default]
    Delta,
    Ignore,
}

/// Resolved reconciliation settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileConfig {
    pub window: Duration,
    pub passes: Vec<Duration>,
    pub growth: Growth,
    pub page_size: u64,
}

/// A server-side stream filter. Policy filters are left out on purpose: their wire type changed in Calico 3.32.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    pub source_names: Vec<StringMatchConfig>,
    pub source_namespaces: Vec<StringMatchConfig>,
    pub dest_names: Vec<StringMatchConfig>,
    pub dest_namespaces: Vec<StringMatchConfig>,
    pub protocols: Vec<StringMatchConfig>,
    pub dest_ports: Vec<i64>,
    /// `Allow`, `Deny` or `Pass`.
    pub actions: Vec<String>,
    /// `Src` or `Dst` (honoured by Calico 3.32+, ignored by older servers).
    pub reporter: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StringMatchConfig {
    pub value: String,
    /// `exact` (default) or `fuzzy` (substring).
    #[serde(default)]
    pub r#type: MatchTypeConfig,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MatchTypeConfig {
    #[default]
    Exact,
    Fuzzy,
}

#[derive(Debug, Clone)]
pub struct GoldmaneConfig {
    /// `https://host:port` for the gRPC channel.
    pub uri: http::Uri,
    pub host: String,
    pub port: u16,
    pub server_name: String,
    pub tls: TlsFiles,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    pub keepalive_interval: Option<Duration>,
    pub start_time_gte: i64,
    pub filter: Option<FilterConfig>,
    /// Off when `None`.
    pub reconcile: Option<ReconcileConfig>,
}

impl RawGoldmane {
    pub(super) fn resolve(self, p: &mut Problems) -> GoldmaneConfig {
        let missing: Vec<String> = [
            (self.host.is_none(), ENV_GOLDMANE_HOST, "goldmane.host"),
            (self.ca_cert_path.is_none(), ENV_CA_CERT_PATH, "goldmane.ca_cert_path"),
            (self.client_key_path.is_none(), ENV_PRIVATE_KEY_PATH, "goldmane.client_key_path"),
            (self.client_cert_path.is_none(), ENV_PUBLIC_CERT_PATH, "goldmane.client_cert_path"),
        ]
        .into_iter()
        .filter(|(absent, ..)| *absent)
        .map(|(_, var, path)| format!("{var} ({path})"))
        .collect();
        if !missing.is_empty() {
            p.named("required", format!("missing required settings: {}", missing.join(", ")));
        }

        let (host, port) = match self.host.as_deref().map(split_host_port) {
            Some(Ok(hp)) => hp,
            Some(Err(msg)) => {
                p.at("goldmane.host", msg);
                (String::new(), 0)
            }
            None => (String::new(), 0),
        };
        let uri = format!("https://{}:{port}", bracket_ipv6(&host))
            .parse::<http::Uri>()
            .unwrap_or_else(|_| http::Uri::from_static("https://invalid:1"));
        // Without its own setting the server name is the host's, so a bad one is the host's problem.
        let server_name_path = if self.server_name.is_some() { "goldmane.server_name" } else { "goldmane.host" };
        let server_name = self.server_name.unwrap_or_else(|| host.clone());
        if let Err(e) = rustls_pki_types::ServerName::try_from(server_name.clone())
            && !host.is_empty()
        {
            p.at(server_name_path, format!("{server_name:?} is not a valid TLS server name: {e}"));
        }
        let reconnect_initial = self.reconnect_initial_ms.unwrap_or(DEFAULT_RECONNECT_INITIAL_MS);
        let reconnect_max = self.reconnect_max_ms.unwrap_or(DEFAULT_RECONNECT_MAX_MS).max(reconnect_initial);
        let keepalive_interval = match self.keepalive_interval_ms {
            Some(ms) if ms < MIN_KEEPALIVE_INTERVAL_MS => {
                p.at(
                    "goldmane.keepalive_interval_ms",
                    format!("{ms} is below {MIN_KEEPALIVE_INTERVAL_MS}: Goldmane answers such pings with GOAWAY too_many_pings"),
                );
                None
            }
            other => other.map(Duration::from_millis),
        };
        let start_time_gte = self.start_time_gte.unwrap_or(0);
        if start_time_gte < -3585 {
            p.at(
                "goldmane.start_time_gte",
                format!("{start_time_gte} reaches past Goldmane's ~1 h history; use -3585 at most"),
            );
        }
        if let Some(f) = &self.filter {
            f.validate(p);
        }
        GoldmaneConfig {
            uri,
            host,
            port,
            server_name,
            tls: TlsFiles {
                ca_cert: self.ca_cert_path,
                client_cert: self.client_cert_path,
                client_key: self.client_key_path,
            },
            reconnect_initial: Duration::from_millis(reconnect_initial),
            reconnect_max: Duration::from_millis(reconnect_max),
            keepalive_interval,
            start_time_gte,
            filter: self.filter,
            reconcile: self.reconcile.resolve(p),
        }
    }
}

impl RawReconcile {
    fn resolve(self, p: &mut Problems) -> Option<ReconcileConfig> {
        if self.enabled == Some(false) {
            return None;
        }
        let window = self.window_secs.unwrap_or(DEFAULT_RECONCILE_WINDOW_SECS);
        let passes = self.passes_secs.unwrap_or_else(|| DEFAULT_RECONCILE_PASSES_SECS.to_vec());
        if !(30..=3_300).contains(&window) {
            p.at(
                "goldmane.reconcile.window_secs",
                format!("{window} must be between 30 and 3300 (Goldmane keeps ~1 h)"),
            );
        }
        if passes.is_empty() {
            p.at("goldmane.reconcile.passes_secs", "needs at least one pass (or set enabled: false)");
        }
        if let Some(&last) = passes.iter().max()
            && last + 30 > window
        {
            p.at(
                "goldmane.reconcile.passes_secs",
                format!("a pass {last} s after a bucket was streamed falls outside the {window} s window"),
            );
        }
        if passes.windows(2).any(|w| w[0] >= w[1]) {
            p.at("goldmane.reconcile.passes_secs", "must be increasing");
        }
        let page_size = self.page_size.unwrap_or(DEFAULT_RECONCILE_PAGE_SIZE);
        if page_size == 0 {
            p.at("goldmane.reconcile.page_size", "must be at least 1");
        }
        Some(ReconcileConfig {
            window: Duration::from_secs(window),
            passes: passes.into_iter().map(Duration::from_secs).collect(),
            growth: self.growth.unwrap_or_default(),
            page_size,
        })
    }
}

impl FilterConfig {
    fn validate(&self, p: &mut Problems) {
        for a in &self.actions {
            if !matches!(a.as_str(), "Allow" | "Deny" | "Pass") {
                p.at("goldmane.filter.actions", format!("{a:?} is not Allow, Deny or Pass"));
            }
        }
        if let Some(r) = &self.reporter
            && !matches!(r.as_str(), "Src" | "Dst")
        {
            p.at("goldmane.filter.reporter", format!("{r:?} is not Src or Dst"));
        }
    }
}

/// Splits `host:port` (`[v6]:port` too). The port is required, as the old exporter dials it as given.
fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| format!("{s:?}: unclosed '[' in IPv6 address"))?;
        let port = after.strip_prefix(':').ok_or_else(|| format!("{s:?} has no :port"))?;
        (h, port)
    } else {
        s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not host:port (for example goldmane:7443)"))?
    };
    if host.is_empty() {
        return Err(format!("{s:?} has an empty host"));
    }
    let port = port.parse::<u16>().map_err(|_| format!("{s:?}: port {port:?} is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err(format!("{s:?}: port 0 cannot be dialled"));
    }
    Ok((host.to_string(), port))
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_splitting() {
        assert_eq!(split_host_port("goldmane:7443").unwrap(), ("goldmane".into(), 7443));
        assert_eq!(split_host_port("[::1]:7443").unwrap(), ("::1".into(), 7443));
        assert!(split_host_port("goldmane").unwrap_err().contains("host:port"));
        assert!(split_host_port("goldmane:x").unwrap_err().contains("port"));
        assert!(split_host_port(":7443").unwrap_err().contains("empty host"));
    }
}
