//! Agents, versions and the trigger registry.

use super::fixtures::*;
use crate::*;
use serde_json::{Map, json};
use std::sync::Arc;

pub async fn creating_an_agent_publishes_version_one_and_claims_its_triggers(
    store: Arc<dyn Store>,
) {
    let tn = tenant(store.as_ref(), "acme").await;
    let other = tenant(store.as_ref(), "globex").await;
    let created = agent(store.as_ref(), &tn, "Ava", &["ava-main", "ava-2"]).await;
    let a = &created.agent;
    assert_eq!(
        (
            a.org_id,
            a.name.as_str(),
            a.status,
            a.owner_user_id,
            a.total_runs
        ),
        (tn.org.id, "Ava", AgentStatus::Active, Some(tn.user.id), 0)
    );
    assert_eq!(a.created_at, stored(t(1)));
    assert!(created.draft.is_none());
    let v1 = created.published.clone().unwrap();
    assert_eq!(
        (v1.agent_id, v1.version_number, v1.status),
        (a.id, 1, VersionStatus::Published)
    );
    assert_eq!(v1.published_at, Some(stored(t(1))));
    assert_eq!(v1.template_context_variables, None);
    // The definition comes back with its keys in the order they were written.
    assert_eq!(
        serde_json::to_string(&v1.definition).unwrap(),
        serde_json::to_string(&definition("Ava")).unwrap()
    );
    assert_eq!(store.get_agent(tn.org.id, a.id).await.unwrap(), created);
    assert_eq!(
        store.find_agent_by_uuid(a.uuid).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(
        store
            .find_agent_by_uuid(uuid::Uuid::new_v4())
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        store.get_agent(other.org.id, a.id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.find_trigger("ava-2").await.unwrap(),
        Some(TriggerOwner {
            path: "ava-2".into(),
            agent_id: a.id,
            org_id: tn.org.id
        })
    );
    // Paths are exact strings.
    assert_eq!(store.find_trigger("AVA-2").await.unwrap(), None);
    assert_eq!(
        store.list_versions(tn.org.id, a.id).await.unwrap(),
        vec![v1]
    );
    assert!(matches!(
        store.list_versions(other.org.id, a.id).await,
        Err(StoreError::NotFound)
    ));
}

fn edit(definition: Option<serde_json::Value>, paths: &[&str]) -> DraftEdit {
    DraftEdit {
        name: None,
        definition,
        template_context_variables: None,
        trigger_paths: paths.iter().map(|p| p.to_string()).collect(),
    }
}

pub async fn drafts_start_from_the_published_version_and_publishing_archives_it(
    store: Arc<dyn Store>,
) {
    let tn = tenant(store.as_ref(), "acme").await;
    let org = tn.org.id;
    let id = agent(store.as_ref(), &tn, "Ava", &[]).await.agent.id;
    // A rename alone starts no draft.
    let renamed = store
        .save_draft(
            org,
            id,
            DraftEdit {
                name: Some("Ava 2".into()),
                ..edit(None, &[])
            },
            t(5),
        )
        .await
        .unwrap();
    assert_eq!(renamed.agent.name, "Ava 2");
    assert!(renamed.draft.is_none());
    // Variables alone start a draft from the published definition.
    let mut vars = Map::new();
    vars.insert("zeta".into(), json!("z"));
    vars.insert("alpha".into(), json!(1));
    let drafted = store
        .save_draft(
            org,
            id,
            DraftEdit {
                template_context_variables: Some(vars.clone()),
                ..edit(None, &[])
            },
            t(6),
        )
        .await
        .unwrap();
    let draft = drafted.draft.clone().unwrap();
    assert_eq!(
        (draft.version_number, draft.status, draft.published_at),
        (2, VersionStatus::Draft, None)
    );
    assert_eq!(draft.created_at, stored(t(6)));
    assert_eq!(draft.definition, definition("Ava"));
    assert_eq!(
        serde_json::to_string(&draft.template_context_variables).unwrap(),
        serde_json::to_string(&vars).unwrap()
    );
    // Further edits change the same draft and keep what they do not mention.
    let edited = store
        .save_draft(org, id, edit(Some(definition("new")), &[]), t(7))
        .await
        .unwrap();
    let draft2 = edited.draft.clone().unwrap();
    assert_eq!(draft2.id, draft.id);
    assert_eq!(draft2.definition, definition("new"));
    assert_eq!(draft2.template_context_variables, Some(vars.clone()));
    assert_eq!(edited.published, drafted.published);

    let published = store.publish(org, id, t(8)).await.unwrap();
    assert!(published.draft.is_none());
    let live = published.published.clone().unwrap();
    assert_eq!(
        (live.id, live.version_number, live.status),
        (draft.id, 2, VersionStatus::Published)
    );
    assert_eq!(live.published_at, Some(stored(t(8))));
    assert!(matches!(
        store.publish(org, id, t(9)).await,
        Err(StoreError::Conflict("no_draft"))
    ));
    let versions = store.list_versions(org, id).await.unwrap();
    let summary: Vec<_> = versions
        .iter()
        .map(|v| (v.version_number, v.status))
        .collect();
    assert_eq!(
        summary,
        vec![(2, VersionStatus::Published), (1, VersionStatus::Archived)]
    );
    // The next draft starts from the new published version, numbered after every other.
    let next = store
        .save_draft(org, id, edit(Some(definition("v3")), &[]), t(10))
        .await
        .unwrap();
    let v3 = next.draft.unwrap();
    assert_eq!(v3.version_number, 3);
    assert_eq!(v3.template_context_variables, Some(vars));
    assert!(matches!(
        store
            .save_draft(org + 1000, id, edit(None, &[]), t(11))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.publish(org, id + 1000, t(11)).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn a_trigger_path_belongs_to_the_first_agent_forever(store: Arc<dyn Store>) {
    let tn = tenant(store.as_ref(), "acme").await;
    let other = tenant(store.as_ref(), "globex").await;
    let first = agent(store.as_ref(), &tn, "first", &["shared"]).await;
    let taken = store
        .create_agent(
            NewAgent {
                org_id: tn.org.id,
                name: "second".into(),
                owner_user_id: tn.user.id,
                definition: definition("second"),
                trigger_paths: vec!["fresh".into(), "shared".into()],
            },
            t(2),
        )
        .await;
    assert!(
        matches!(taken, Err(StoreError::Conflict("trigger_path_taken"))),
        "{taken:?}"
    );
    // The failed create left nothing behind: no agent, no half-claimed path.
    assert_eq!(store.list_agents(tn.org.id, None).await.unwrap().len(), 1);
    assert_eq!(store.find_trigger("fresh").await.unwrap(), None);
    let second = agent(store.as_ref(), &tn, "second", &["fresh"]).await;
    let stolen = store
        .save_draft(tn.org.id, second.agent.id, edit(None, &["shared"]), t(3))
        .await;
    assert!(matches!(
        stolen,
        Err(StoreError::Conflict("trigger_path_taken"))
    ));
    // Re-claiming one's own path is fine, and so is a new one.
    store
        .save_draft(
            tn.org.id,
            first.agent.id,
            edit(None, &["shared", "more"]),
            t(3),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .find_trigger("more")
            .await
            .unwrap()
            .map(|o| o.agent_id),
        Some(first.agent.id)
    );
    // Archiving does not release a path, and other organisations cannot take it either.
    store
        .archive_agent(tn.org.id, first.agent.id)
        .await
        .unwrap();
    let elsewhere = store
        .create_agent(
            NewAgent {
                org_id: other.org.id,
                name: "theirs".into(),
                owner_user_id: other.user.id,
                definition: definition("theirs"),
                trigger_paths: vec!["shared".into()],
            },
            t(4),
        )
        .await;
    assert!(matches!(
        elsewhere,
        Err(StoreError::Conflict("trigger_path_taken"))
    ));
    assert_eq!(
        store.find_trigger("shared").await.unwrap(),
        Some(TriggerOwner {
            path: "shared".into(),
            agent_id: first.agent.id,
            org_id: tn.org.id
        })
    );
}

pub async fn concurrent_agents_claiming_one_trigger_path_get_one_winner(store: Arc<dyn Store>) {
    let tn = tenant(store.as_ref(), "acme").await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        let (org, user) = (tn.org.id, tn.user.id);
        tasks.push(tokio::spawn(async move {
            store
                .create_agent(
                    NewAgent {
                        org_id: org,
                        name: format!("racer {i}"),
                        owner_user_id: user,
                        definition: definition("race"),
                        trigger_paths: vec![format!("own-{i}"), "contested".into()],
                    },
                    t(1),
                )
                .await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(b) => winners.push(b.agent.id),
            Err(StoreError::Conflict("trigger_path_taken")) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one agent gets the path");
    assert_eq!(
        store
            .find_trigger("contested")
            .await
            .unwrap()
            .map(|o| o.agent_id),
        Some(winners[0])
    );
    assert_eq!(store.list_agents(tn.org.id, None).await.unwrap().len(), 1);
}

pub async fn agents_are_listed_newest_first_archived_and_reowned(store: Arc<dyn Store>) {
    let tn = tenant(store.as_ref(), "acme").await;
    let other = tenant(store.as_ref(), "globex").await;
    let a = agent(store.as_ref(), &tn, "a", &[]).await.agent;
    let b = agent(store.as_ref(), &tn, "b", &[]).await.agent;
    agent(store.as_ref(), &other, "theirs", &[]).await;
    let names = |v: Vec<Agent>| v.into_iter().map(|a| a.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_agents(tn.org.id, None).await.unwrap()),
        ["b", "a"]
    );
    let archived = store.archive_agent(tn.org.id, a.id).await.unwrap();
    assert_eq!(archived.agent.status, AgentStatus::Archived);
    assert!(archived.published.is_some());
    assert_eq!(
        names(
            store
                .list_agents(tn.org.id, Some(AgentStatus::Active))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(
            store
                .list_agents(tn.org.id, Some(AgentStatus::Archived))
                .await
                .unwrap()
        ),
        ["a"]
    );
    assert!(matches!(
        store.archive_agent(other.org.id, b.id).await,
        Err(StoreError::NotFound)
    ));
    let colleague = store
        .create_user(tn.org.id, "colleague@acme.test", None, t(3))
        .await
        .unwrap();
    let moved = store
        .set_owner(tn.org.id, b.id, colleague.id)
        .await
        .unwrap();
    assert_eq!(moved.agent.owner_user_id, Some(colleague.id));
    // The user is checked first: a stranger is `user_not_found` even for a missing agent.
    assert!(matches!(
        store.set_owner(tn.org.id, b.id, other.user.id).await,
        Err(StoreError::Conflict("user_not_found"))
    ));
    assert!(matches!(
        store.set_owner(tn.org.id, b.id + 1000, other.user.id).await,
        Err(StoreError::Conflict("user_not_found"))
    ));
    assert!(matches!(
        store.set_owner(tn.org.id, b.id + 1000, colleague.id).await,
        Err(StoreError::NotFound)
    ));
}
