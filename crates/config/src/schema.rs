//! The file schema: what serde reads, before any meaning is checked.
//!
//! Every key is optional here except the names and addresses that have no sensible default;
//! values whose syntax we check ourselves (addresses, modes, transports) are plain strings so
//! that [`crate::validate`] can say exactly what is wrong with them. Unknown keys are refused
//! everywhere (`deny_unknown_fields`), so a misspelt key is an error, not a silent default.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) gateway: RawGateway,
    #[serde(default)]
    pub(crate) listen: RawListen,
    #[serde(default)]
    pub(crate) media: RawMedia,
    #[serde(default)]
    pub(crate) limits: RawLimits,
    #[serde(default)]
    pub(crate) admin: RawAdmin,
    #[serde(default)]
    pub(crate) tls: RawTls,
    #[serde(default, rename = "dial_plan")]
    pub(crate) dial_plans: Vec<RawDialPlan>,
    #[serde(default, rename = "peer")]
    pub(crate) peers: Vec<RawPeer>,
    #[serde(default)]
    pub(crate) hosts: BTreeMap<String, String>,
}

/// `[gateway]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub(crate) fqdn: Option<String>,
    pub(crate) addresses: Option<Vec<String>>,
    pub(crate) data_dir: Option<String>,
    pub(crate) cert_dir: Option<String>,
    pub(crate) trust_dir: Option<String>,
    pub(crate) trust_own_certificate: Option<bool>,
}

/// `[listen]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    pub(crate) udp: Option<String>,
    pub(crate) tcp: Option<String>,
    pub(crate) tls: Option<String>,
    pub(crate) advertise: Option<String>,
}

/// `[media]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMedia {
    pub(crate) address: Option<String>,
    pub(crate) port_min: Option<u16>,
    pub(crate) port_max: Option<u16>,
    pub(crate) workers: Option<usize>,
    /// `idle_timeout_secs` is the name it had before calls were ended on it.
    #[serde(alias = "idle_timeout_secs")]
    pub(crate) timeout_secs: Option<u64>,
    pub(crate) hold_timeout_secs: Option<u64>,
    pub(crate) wakeup_coalesce_us: Option<u64>,
}

/// `[limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) max_calls: Option<usize>,
    pub(crate) retry_after_secs: Option<u32>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_connections_per_ip: Option<usize>,
    pub(crate) tls_handshake_timeout_ms: Option<u64>,
    pub(crate) shutdown_grace_secs: Option<u64>,
    pub(crate) admission_timeout_ms: Option<u64>,
    pub(crate) partial_message_timeout_ms: Option<u64>,
    pub(crate) max_stranger_connections: Option<usize>,
    pub(crate) max_stranger_connections_per_ip: Option<usize>,
    pub(crate) plain_peers_only: Option<bool>,
    pub(crate) session_expires_secs: Option<u64>,
    pub(crate) min_se_secs: Option<u64>,
}

/// `[admin]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) http: Option<String>,
}

/// `[tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub(crate) identity_from_cn: Option<bool>,
    pub(crate) tls_peer_ports: Option<Vec<u16>>,
}

/// `[[dial_plan]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDialPlan {
    pub(crate) name: String,
    pub(crate) voip_security: Option<String>,
    #[serde(default)]
    pub(crate) routes: Vec<RawRoute>,
}

/// One entry of `routes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) prefix: String,
    pub(crate) target: String,
}

/// `[[peer]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeer {
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) port: u16,
    pub(crate) transport: Option<String>,
    pub(crate) dial_plan: String,
    pub(crate) media_source: Option<String>,
    pub(crate) media_latching: Option<String>,
}
