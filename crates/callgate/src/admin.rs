//! `callgate admin …`: the instance administration of SPEC §6.4 without the HTTP API.

use anyhow::{Result, anyhow};
use callgate_domain::clock::{Clock, SystemClock};
use callgate_server::http::keys::issue_api_key;
use callgate_store::{KeyScopes, Store};
use clap::Subcommand;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an organisation.
    CreateOrg { name: String },
    /// List organisations.
    ListOrgs,
    /// Add a user to an organisation.
    CreateUser {
        org_id: i64,
        email: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Activate or deactivate a user.
    SetUserActive {
        org_id: i64,
        user_id: i64,
        active: bool,
    },
    /// Create an API key for a user (the raw key is printed once).
    CreateKey {
        org_id: i64,
        user_id: i64,
        name: String,
        /// Allow managing agents, keys and configurations.
        #[arg(long)]
        admin: bool,
    },
    /// Set the remaining call seconds; `unlimited` removes the limit.
    SetQuota { org_id: i64, seconds: String },
}

pub async fn run(store: Arc<dyn Store>, cmd: AdminCommand) -> Result<()> {
    let now = SystemClock.now();
    let err = |e: callgate_store::StoreError| anyhow!("{e}");
    match cmd {
        AdminCommand::CreateOrg { name } => {
            let org = store.create_org(&name, now).await.map_err(err)?;
            println!("organization {} created: {}", org.id, org.name);
        }
        AdminCommand::ListOrgs => {
            for o in store.list_orgs().await.map_err(err)? {
                let quota = o
                    .quota_seconds_remaining
                    .map_or("unlimited".to_owned(), |q| q.to_string());
                println!("{}\t{}\tquota={quota}", o.id, o.name);
            }
        }
        AdminCommand::CreateUser {
            org_id,
            email,
            name,
        } => {
            let u = store
                .create_user(org_id, &email, name.as_deref(), now)
                .await
                .map_err(err)?;
            println!("user {} created: {}", u.id, u.email);
        }
        AdminCommand::SetUserActive {
            org_id,
            user_id,
            active,
        } => {
            let u = store
                .set_user_active(org_id, user_id, active)
                .await
                .map_err(err)?;
            println!("user {} active={}", u.id, u.active);
        }
        AdminCommand::CreateKey {
            org_id,
            user_id,
            name,
            admin,
        } => {
            let scopes = KeyScopes {
                admin,
                ..KeyScopes::default()
            };
            let (key, raw) = issue_api_key(store.as_ref(), org_id, user_id, &name, scopes, now)
                .await
                .map_err(err)?;
            println!(
                "API key {} ({}) created; shown only once:",
                key.id, key.key_prefix
            );
            println!("{raw}");
        }
        AdminCommand::SetQuota { org_id, seconds } => {
            let q = if seconds == "unlimited" {
                None
            } else {
                Some(
                    seconds
                        .parse::<i64>()
                        .map_err(|_| anyhow!("seconds must be an integer or 'unlimited'"))?,
                )
            };
            let o = store.set_quota(org_id, q).await.map_err(err)?;
            println!(
                "organization {} quota={}",
                o.id,
                o.quota_seconds_remaining
                    .map_or("unlimited".to_owned(), |q| q.to_string())
            );
        }
    }
    Ok(())
}
