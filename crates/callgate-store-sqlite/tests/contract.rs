//! The store contract suite (`callgate_store::contract`) against SQLite: one test per
//! behaviour, each on a fresh database file in a temporary directory.
#![allow(clippy::unwrap_used)]

use callgate_store::Store;
use callgate_store::contract::ContractTest;
use callgate_store_sqlite::SqliteStore;
use std::sync::Arc;

async fn harness(_name: &'static str, test: ContractTest) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("contract.db")).unwrap());
    // On its own task, as a server would call the store; a panic there fails this test.
    let outcome = tokio::spawn(test(store)).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

callgate_store::store_contract_tests!(harness);
