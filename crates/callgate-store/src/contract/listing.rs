//! The filtered, paged run list of `GET /api/v1/calls`.

use super::fixtures::*;
use crate::*;
use callgate_domain::lifecycle::{Outcome, RunStatus};
use std::sync::Arc;

pub async fn runs_are_listed_newest_first_with_filters_and_paging(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let other = world(store.as_ref(), "globex").await;
    let org = w.tn.org.id;
    let second_agent = agent(store.as_ref(), &w.tn, "second", &[]).await;
    let mut ids = Vec::new();
    for i in 0..6i64 {
        let which = if i % 2 == 0 { &w.agent } else { &second_agent };
        let mut new = new_run(
            store.as_ref(),
            which,
            &w.config,
            RunStatus::Queued,
            t(10 + i),
        )
        .await;
        new.external_id = Some(format!("ext-{}", i % 3));
        new.phone_number = format!("+1415555020{}", i % 2);
        ids.push(store.enqueue_run(new, None).await.unwrap().id);
    }
    run(
        store.as_ref(),
        &other.agent,
        &other.config,
        RunStatus::Queued,
        t(10),
    )
    .await;
    apply(
        store.as_ref(),
        ids[1],
        signal_ended(Outcome::Canceled, "canceled"),
        t(30),
    )
    .await;
    let list = |f: RunFilter| {
        let store = store.clone();
        async move {
            store
                .list_runs(org, &f)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    let all = RunFilter {
        limit: 100,
        ..RunFilter::default()
    };
    let newest_first: Vec<_> = ids.iter().rev().copied().collect();
    assert_eq!(list(all.clone()).await, newest_first);
    let listed = store.list_runs(org, &all).await.unwrap();
    assert_eq!(
        listed.iter().find(|r| r.id == ids[1]).unwrap(),
        &store.get_run(org, ids[1]).await.unwrap(),
        "listed runs carry their events like get_run"
    );
    assert_eq!(
        list(RunFilter {
            status: Some(RunStatus::Ended),
            ..all.clone()
        })
        .await,
        vec![ids[1]]
    );
    assert_eq!(
        list(RunFilter {
            outcome: Some(Outcome::Canceled),
            ..all.clone()
        })
        .await,
        vec![ids[1]]
    );
    assert_eq!(
        list(RunFilter {
            agent_id: Some(second_agent.agent.id),
            ..all.clone()
        })
        .await,
        vec![ids[5], ids[3], ids[1]]
    );
    assert_eq!(
        list(RunFilter {
            external_id: Some("ext-1".into()),
            ..all.clone()
        })
        .await,
        vec![ids[4], ids[1]]
    );
    assert_eq!(
        list(RunFilter {
            phone_number: Some("+14155550200".into()),
            ..all.clone()
        })
        .await,
        vec![ids[4], ids[2], ids[0]]
    );
    // `created_after` is inclusive, `created_before` exclusive, at stored precision.
    assert_eq!(
        list(RunFilter {
            created_after: Some(t(12)),
            created_before: Some(t(14)),
            ..all.clone()
        })
        .await,
        vec![ids[3], ids[2]]
    );
    // Cursor paging: two at a time, each page below the last id seen.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = list(RunFilter {
            limit: 2,
            before_id: before,
            ..all.clone()
        })
        .await;
        if page.is_empty() {
            break;
        }
        before = page.last().copied();
        pages.push(page);
    }
    assert_eq!(pages.len(), 3);
    assert_eq!(pages.concat(), newest_first);
    assert!(
        list(RunFilter {
            limit: 0,
            ..all.clone()
        })
        .await
        .is_empty()
    );
}
