//! The store contract: what every backend must do, as one async function per behaviour, run by
//! each backend's tests through [`store_contract_tests!`](crate::store_contract_tests).
//!
//! The functions take a fresh, empty store and panic on the first broken promise. They check
//! what callers can observe (records, errors, ordering, concurrency), never how a backend
//! stores it, and never exact ids (SQLite reuses a rolled-back id, PostgreSQL does not).
//! Times carry nanoseconds on purpose: every backend keeps whole microseconds and must hand
//! back the same instant from every method.
//!
//! Enabled by the `contract` feature; only tests use it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agents;
/// Builders for the records the checks need; backends' own tests use them too.
pub mod fixtures;
mod lifecycle;
mod listing;
mod queue;
mod runs;
mod telephony;
mod tenants;

pub use agents::*;
pub use lifecycle::*;
pub use listing::*;
pub use queue::*;
pub use runs::*;
pub use telephony::*;
pub use tenants::*;

use crate::Store;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// One contract check, running against a fresh store.
pub type ContractFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
/// A contract check as a plain function pointer, which is what a backend's harness receives.
pub type ContractTest = fn(Arc<dyn Store>) -> ContractFuture;

/// Expands to one `#[tokio::test]` per contract function. `$harness` is an async fn
/// `(name: &'static str, test: ContractTest)` that creates a fresh store, runs `test` on it
/// and cleans up; the calling crate needs `tokio` (with `macros`) as a dev-dependency.
///
/// ```ignore
/// async fn harness(name: &'static str, test: ContractTest) { … }
/// callgate_store::store_contract_tests!(harness);
/// ```
#[macro_export]
macro_rules! store_contract_tests {
    ($harness:path) => {
        $crate::store_contract_tests!(@each $harness;
            a_new_store_is_empty_until_an_organisation_exists,
            organisation_settings_and_quota_round_trip,
            emails_are_unique_within_an_organisation,
            api_keys_are_found_by_hash_with_their_scopes,
            touching_api_keys_keeps_the_latest_use,
            creating_an_agent_publishes_version_one_and_claims_its_triggers,
            drafts_start_from_the_published_version_and_publishing_archives_it,
            a_trigger_path_belongs_to_the_first_agent_forever,
            concurrent_agents_claiming_one_trigger_path_get_one_winner,
            agents_are_listed_newest_first_archived_and_reowned,
            one_configuration_is_the_default_outbound,
            configurations_update_and_soft_delete,
            phone_numbers_are_unique_per_configuration,
            allocated_run_ids_are_unique_and_increasing,
            an_enqueued_run_reads_back_exactly_as_it_was_returned,
            an_idempotency_key_is_recorded_with_its_run_and_cannot_be_reused,
            purging_idempotency_records_deletes_only_older_ones,
            runs_are_listed_newest_first_with_filters_and_paging,
            claims_take_the_oldest_due_queued_runs_of_one_configuration,
            concurrent_claimers_never_share_a_run,
            paced_claims_respect_live_limits_and_keep_their_pacing,
            lifecycle_updates_move_forward_and_ignore_duplicates,
            ending_an_answered_call_deducts_its_seconds_from_the_quota,
            batched_updates_apply_in_order_and_fail_alone,
            a_batch_leaves_a_run_as_the_same_updates_one_by_one,
            concurrent_updates_of_one_run_apply_once,
            live_runs_and_queue_counts_follow_the_statuses,
            runs_of_silent_nodes_are_orphans,
            the_live_runs_leased_to_a_node_are_listed,
            a_nodes_last_heartbeat_reads_back,
            a_run_not_yet_dialled_is_canceled_once_and_never_claimed,
            cancels_racing_claims_never_share_a_run,
        );
    };
    (@each $harness:path; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $harness(
                    stringify!($name),
                    |store| -> $crate::contract::ContractFuture {
                        ::std::boxed::Box::pin($crate::contract::$name(store))
                    },
                )
                .await;
            }
        )*
    };
}
