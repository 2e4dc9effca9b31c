//! Organisations, users and API keys.

use super::fixtures::*;
use crate::*;
use std::sync::Arc;

pub async fn a_new_store_is_empty_until_an_organisation_exists(store: Arc<dyn Store>) {
    assert!(store.is_empty().await.unwrap());
    assert!(store.list_orgs().await.unwrap().is_empty());
    let a = store.create_org("Acme", t(0)).await.unwrap();
    let b = store.create_org("Globex", t(1)).await.unwrap();
    assert!(!store.is_empty().await.unwrap());
    assert_eq!(a.name, "Acme");
    assert_eq!(a.created_at, stored(t(0)));
    assert_eq!(a.quota_seconds_remaining, None);
    assert_eq!(a.settings, OrgSettings::default());
    assert_eq!(store.list_orgs().await.unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(store.get_org(b.id).await.unwrap(), b);
    let missing = a.id.max(b.id) + 1000;
    assert!(matches!(
        store.get_org(missing).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn organisation_settings_and_quota_round_trip(store: Arc<dyn Store>) {
    let org = store.create_org("Acme", t(0)).await.unwrap();
    // The whole u32 range must survive, whatever column type a backend picks.
    let settings = OrgSettings {
        max_concurrent_calls: u32::MAX,
        max_queued_calls: 3,
        on_capacity: OnCapacity::Reject,
    };
    let updated = store.update_org_settings(org.id, &settings).await.unwrap();
    assert_eq!(updated.settings, settings);
    assert_eq!(store.get_org(org.id).await.unwrap().settings, settings);
    assert_eq!(
        store
            .set_quota(org.id, Some(-5))
            .await
            .unwrap()
            .quota_seconds_remaining,
        Some(-5)
    );
    let cleared = store.set_quota(org.id, None).await.unwrap();
    assert_eq!(cleared.quota_seconds_remaining, None);
    assert_eq!(store.get_org(org.id).await.unwrap(), cleared);
    let missing = org.id + 1000;
    assert!(matches!(
        store.update_org_settings(missing, &settings).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.set_quota(missing, Some(1)).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn emails_are_unique_within_an_organisation(store: Arc<dyn Store>) {
    let a = store.create_org("Acme", t(0)).await.unwrap();
    let b = store.create_org("Globex", t(0)).await.unwrap();
    let user = store
        .create_user(a.id, "ann@example.com", Some("Ann"), t(1))
        .await
        .unwrap();
    assert_eq!(
        (user.org_id, user.email.as_str(), user.name.as_deref()),
        (a.id, "ann@example.com", Some("Ann"))
    );
    assert!(user.active);
    assert_eq!(user.created_at, stored(t(1)));
    let dup = store.create_user(a.id, "ann@example.com", None, t(2)).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict("email_taken"))),
        "{dup:?}"
    );
    // Another organisation may use the address; addresses compare exactly.
    store
        .create_user(b.id, "ann@example.com", None, t(2))
        .await
        .unwrap();
    store
        .create_user(a.id, "Ann@example.com", None, t(2))
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_user(a.id.max(b.id) + 1000, "x@example.com", None, t(2))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.get_user(a.id, user.id).await.unwrap(), user);
    assert!(matches!(
        store.get_user(b.id, user.id).await,
        Err(StoreError::NotFound)
    ));
    let off = store.set_user_active(a.id, user.id, false).await.unwrap();
    assert!(!off.active);
    assert!(!store.get_user(a.id, user.id).await.unwrap().active);
    assert!(matches!(
        store.set_user_active(b.id, user.id, true).await,
        Err(StoreError::NotFound)
    ));
}

fn new_key(org: OrgId, user: UserId, name: &str, hash: u8, scopes: KeyScopes) -> NewApiKey {
    NewApiKey {
        org_id: org,
        user_id: user,
        name: name.into(),
        key_prefix: format!("cg_{name}"),
        key_hash: [hash; 32],
        scopes,
    }
}

pub async fn api_keys_are_found_by_hash_with_their_scopes(store: Arc<dyn Store>) {
    let tn = tenant(store.as_ref(), "acme").await;
    let other = tenant(store.as_ref(), "globex").await;
    let scopes = KeyScopes {
        agents: Some(vec![3, 1]),
        environments: Some(vec![Environment::Test]),
        admin: true,
    };
    let first = store
        .create_api_key(
            new_key(tn.org.id, tn.user.id, "first", 1, scopes.clone()),
            t(3),
        )
        .await
        .unwrap();
    assert_eq!(first.scopes, scopes);
    assert_eq!(first.key_prefix, "cg_first");
    assert!(first.active);
    assert_eq!(first.created_at, stored(t(3)));
    assert_eq!(first.last_used_at, None);
    let second = store
        .create_api_key(
            new_key(tn.org.id, tn.user.id, "second", 2, KeyScopes::default()),
            t(4),
        )
        .await
        .unwrap();
    assert_eq!(
        store.find_api_key(&[1; 32]).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.find_api_key(&[9; 32]).await.unwrap(), None);
    assert_eq!(
        store.list_api_keys(tn.org.id).await.unwrap(),
        vec![first.clone(), second]
    );
    assert!(store.list_api_keys(other.org.id).await.unwrap().is_empty());
    // A user of another organisation cannot own a key here.
    assert!(matches!(
        store
            .create_api_key(
                new_key(tn.org.id, other.user.id, "x", 3, KeyScopes::default()),
                t(4)
            )
            .await,
        Err(StoreError::NotFound)
    ));
    let off = store
        .set_api_key_active(tn.org.id, first.id, false)
        .await
        .unwrap();
    assert!(!off.active);
    // Lookup by hash still finds an inactive key (the caller answers 401 for it).
    assert_eq!(store.find_api_key(&[1; 32]).await.unwrap(), Some(off));
    assert!(matches!(
        store.set_api_key_active(other.org.id, first.id, true).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn touching_api_keys_keeps_the_latest_use(store: Arc<dyn Store>) {
    let tn = tenant(store.as_ref(), "acme").await;
    let a = store
        .create_api_key(
            new_key(tn.org.id, tn.user.id, "a", 1, KeyScopes::default()),
            t(1),
        )
        .await
        .unwrap();
    let b = store
        .create_api_key(
            new_key(tn.org.id, tn.user.id, "b", 2, KeyScopes::default()),
            t(1),
        )
        .await
        .unwrap();
    store.touch_api_keys(vec![]).await.unwrap();
    store
        .touch_api_keys(vec![(a.id, t(20)), (b.id, t(5)), (a.id, t(10))])
        .await
        .unwrap();
    let used = |k: &ApiKey| k.last_used_at;
    let keys = store.list_api_keys(tn.org.id).await.unwrap();
    assert_eq!(used(&keys[0]), Some(stored(t(20))));
    assert_eq!(used(&keys[1]), Some(stored(t(5))));
    // An older report never moves the time back.
    store.touch_api_keys(vec![(a.id, t(15))]).await.unwrap();
    let keys = store.list_api_keys(tn.org.id).await.unwrap();
    assert_eq!(used(&keys[0]), Some(stored(t(20))));
}
