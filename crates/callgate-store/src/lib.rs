//! What callgate needs from a database, as use-case sized async traits (one method per thing a
//! handler or worker does, each its own transaction), the records they return and one error
//! type. Backends (SQLite, PostgreSQL) implement `Store`; nothing above this crate names one.
#![forbid(unsafe_code)]

#[cfg(feature = "contract")]
pub mod contract;
mod records;
mod traits;

pub use records::*;
pub use traits::*;

/// Why a store call failed. Constraint violations arrive as `Conflict` with a stable code so
/// handlers map them to client errors without racy pre-checks.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness or state rule was violated; the code is the API error code to report.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database cannot be reached right now; callers answer 503 and retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;
