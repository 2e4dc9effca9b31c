//! Telephony configurations and caller-ID numbers.

use super::fixtures::*;
use crate::*;
use std::sync::Arc;

pub async fn one_configuration_is_the_default_outbound(store: Arc<dyn Store>) {
    let tn = tenant(store.as_ref(), "acme").await;
    let other = tenant(store.as_ref(), "globex").await;
    let org = tn.org.id;
    let theirs = config(store.as_ref(), other.org.id, "theirs").await;
    let a = config(store.as_ref(), org, "a").await;
    assert!(a.is_default_outbound);
    assert_eq!(
        (
            a.org_id,
            a.name.as_str(),
            a.provider.as_str(),
            a.calls_per_second,
            a.max_concurrent_calls,
            a.active
        ),
        (org, "a", "simulator", 2.5, Some(7), true)
    );
    assert_eq!(a.credentials_sealed, vec![0, 1, 2, 255, 0]);
    assert_eq!(a.credential_fields, vec!["token", "account"]);
    assert_eq!(a.created_at, stored(t(2)));
    let b = config(store.as_ref(), org, "b").await;
    let c = store
        .create_config(new_config(org, "c", false), t(3))
        .await
        .unwrap();
    assert!(!c.is_default_outbound);
    let defaults = |list: Vec<ConfigWithNumbers>| {
        list.into_iter()
            .map(|c| (c.config.name, c.config.is_default_outbound))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        defaults(store.list_configs(org).await.unwrap()),
        [("a".into(), false), ("b".into(), true), ("c".into(), false)]
    );
    let switched = store.set_default_outbound(org, a.id).await.unwrap();
    assert!(switched.is_default_outbound);
    assert_eq!(
        defaults(store.list_configs(org).await.unwrap()),
        [("a".into(), true), ("b".into(), false), ("c".into(), false)]
    );
    // Another organisation's default is its own business.
    assert!(
        store
            .get_config_any(theirs.id)
            .await
            .unwrap()
            .is_default_outbound
    );
    assert!(matches!(
        store.set_default_outbound(other.org.id, b.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.get_config(org, b.id).await.unwrap(),
        ConfigWithNumbers {
            config: store.get_config_any(b.id).await.unwrap(),
            numbers: vec![]
        }
    );
}

pub async fn configurations_update_and_soft_delete(store: Arc<dyn Store>) {
    let tn = tenant(store.as_ref(), "acme").await;
    let other = tenant(store.as_ref(), "globex").await;
    let org = tn.org.id;
    let cfg = config(store.as_ref(), org, "a").await;
    let update = || TelephonyConfigUpdate {
        name: "renamed".into(),
        credentials_sealed: vec![9; 40],
        credential_fields: vec![],
        calls_per_second: 0.25,
        max_concurrent_calls: Some(u32::MAX),
        active: false,
    };
    let updated = store.update_config(org, cfg.id, update()).await.unwrap();
    assert_eq!(
        updated,
        TelephonyConfig {
            name: "renamed".into(),
            credentials_sealed: vec![9; 40],
            credential_fields: vec![],
            calls_per_second: 0.25,
            max_concurrent_calls: Some(u32::MAX),
            active: false,
            ..cfg.clone()
        }
    );
    assert!(matches!(
        store.update_config(other.org.id, cfg.id, update()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_config(other.org.id, cfg.id).await,
        Err(StoreError::NotFound)
    ));
    store.delete_config(org, cfg.id).await.unwrap();
    assert!(matches!(
        store.get_config(org, cfg.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.list_configs(org).await.unwrap().is_empty());
    assert!(matches!(
        store.delete_config(org, cfg.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.update_config(org, cfg.id, update()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.set_default_outbound(org, cfg.id).await,
        Err(StoreError::NotFound)
    ));
    // Runs keep pointing at a deleted configuration, so the dispatcher still sees it.
    let gone = store.get_config_any(cfg.id).await.unwrap();
    assert_eq!((gone.active, gone.is_default_outbound), (false, false));
    assert_eq!(gone.name, "renamed");
    assert!(matches!(
        store.get_config_any(cfg.id + 1000).await,
        Err(StoreError::NotFound)
    ));
}

fn number(address: &str, default: bool) -> PhoneNumberFields {
    PhoneNumberFields {
        address: address.into(),
        label: Some(format!("label {address}")),
        is_default_caller_id: default,
        is_active: true,
    }
}

pub async fn phone_numbers_are_unique_per_configuration(store: Arc<dyn Store>) {
    let tn = tenant(store.as_ref(), "acme").await;
    let other = tenant(store.as_ref(), "globex").await;
    let org = tn.org.id;
    let a = config(store.as_ref(), org, "a").await;
    let b = config(store.as_ref(), org, "b").await;
    let n1 = store
        .add_number(org, a.id, number("+14155550101", true), t(5))
        .await
        .unwrap();
    assert_eq!(
        (
            n1.config_id,
            n1.org_id,
            n1.address.as_str(),
            n1.label.as_deref()
        ),
        (a.id, org, "+14155550101", Some("label +14155550101"))
    );
    assert!(n1.is_default_caller_id && n1.is_active);
    assert_eq!(n1.created_at, stored(t(5)));
    let dup = store
        .add_number(org, a.id, number("+14155550101", false), t(6))
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict("phone_number_exists"))),
        "{dup:?}"
    );
    // The same address may serve another configuration.
    store
        .add_number(org, b.id, number("+14155550101", false), t(6))
        .await
        .unwrap();
    // A new default caller ID replaces the old one.
    let n2 = store
        .add_number(org, a.id, number("+14155550102", true), t(7))
        .await
        .unwrap();
    let listed = store.get_config(org, a.id).await.unwrap().numbers;
    let summary: Vec<_> = listed
        .iter()
        .map(|n| (n.id, n.is_default_caller_id))
        .collect();
    assert_eq!(summary, vec![(n1.id, false), (n2.id, true)]);
    let clash = store
        .update_number(org, a.id, n2.id, number("+14155550101", false))
        .await;
    assert!(matches!(
        clash,
        Err(StoreError::Conflict("phone_number_exists"))
    ));
    let mut fields = number("+14155550103", true);
    fields.label = None;
    fields.is_active = false;
    let moved = store.update_number(org, a.id, n1.id, fields).await.unwrap();
    assert_eq!(
        (
            moved.address.as_str(),
            moved.label.as_deref(),
            moved.is_default_caller_id,
            moved.is_active
        ),
        ("+14155550103", None, true, false)
    );
    assert_eq!(moved.created_at, n1.created_at);
    assert!(
        !store.get_config(org, a.id).await.unwrap().numbers[1].is_default_caller_id,
        "the previous default caller ID is cleared"
    );
    assert!(matches!(
        store
            .update_number(org, b.id, n1.id, number("+1", false))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .add_number(other.org.id, a.id, number("+1", false), t(8))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_number(org, b.id, n1.id).await,
        Err(StoreError::NotFound)
    ));
    store.delete_number(org, a.id, n1.id).await.unwrap();
    assert!(matches!(
        store.delete_number(org, a.id, n1.id).await,
        Err(StoreError::NotFound)
    ));
    let left: Vec<_> = store
        .list_configs(org)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.numbers.len())
        .collect();
    assert_eq!(left, vec![1, 1]);
}
