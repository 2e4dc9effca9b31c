//! Whether a configuration can place outbound calls now (SPEC §2.3 check 18), and which
//! credential fields each provider needs.

use callgate_store::ConfigWithNumbers;

/// Credential fields a provider cannot work without.
pub fn required_credentials(provider: &str) -> &'static [&'static str] {
    match provider {
        "twilio" => &["account_sid", "auth_token"],
        "vonage" => &["application_id", "private_key"],
        "plivo" => &["auth_id", "auth_token"],
        "telnyx" => &["api_key", "connection_id"],
        _ => &[],
    }
}

/// `Ok` when the configuration is ready, else the reason shown to the caller.
pub fn check(cfg: &ConfigWithNumbers) -> Result<(), String> {
    if cfg.config.provider == "simulator" {
        return Ok(());
    }
    let missing: Vec<&str> = required_credentials(&cfg.config.provider)
        .iter()
        .copied()
        .filter(|f| !cfg.config.credential_fields.iter().any(|c| c == f))
        .collect();
    if !missing.is_empty() {
        return Err(format!("Missing credentials: {}.", missing.join(", ")));
    }
    if !cfg.numbers.iter().any(|n| n.is_active) {
        return Err("Add an active caller-ID phone number to it.".into());
    }
    // Carrier dialling arrives with the carriers issue; until then say so instead of
    // accepting calls that could never be placed.
    Err("Dialling through this provider is not available in this build yet.".into())
}
