//! Server configuration (SPEC §12). The binary fills it from defaults, `callgate.toml` and
//! `CALLGATE_*` variables; the library only consumes it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Base of absolute URLs (trigger URLs, provider callbacks); default `http://` + bind.
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    /// Enables the instance admin API (SPEC §6.4) when set.
    pub admin_token: Option<Secret>,
    /// 32-byte key (base64) sealing credentials; generated into the data dir when absent.
    pub server_key: Option<Secret>,
    /// Create the first-start demo tenant on an empty database.
    pub bootstrap: bool,
    pub allow_private_webhook_targets: bool,
    /// Name of this node in leases and logs.
    pub node_id: String,
    /// Run the HTTP API.
    pub run_api: bool,
    /// Run the dispatcher and lifecycle workers.
    pub run_worker: bool,
    /// How long cached keys, triggers and agents may be served before a re-read; other
    /// nodes' edits become visible within this time.
    pub cache_ttl_ms: u64,
}

impl Config {
    /// Defaults of SPEC §12 with the data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            data_dir,
            admin_token: None,
            server_key: None,
            bootstrap: true,
            allow_private_webhook_targets: false,
            node_id: format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            run_api: true,
            run_worker: true,
            cache_ttl_ms: 2000,
        }
    }
}
