//! Conversions between records and PostgreSQL values, and the mapping of driver errors to
//! `StoreError`.

use callgate_store::{StoreError, StoreResult};
use deadpool_postgres::PoolError;
use jiff::Timestamp;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSql;

/// A driver error as a `StoreError`: lost or refused connections and transient lock failures
/// are `Unavailable` (the caller answers 503 and retries), everything else `Internal`.
pub fn db_err(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // Class 08 is "connection exception"; the others are a server shutting down or full,
        // and lock conflicts a retry resolves (the SQLite backend reports busy the same way).
        let transient = code.starts_with("08")
            || matches!(
                code,
                "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "55P03"
            );
        let msg = format!("{code}: {}", db.message());
        return if transient {
            StoreError::Unavailable(msg)
        } else {
            StoreError::Internal(msg)
        };
    }
    let kind = e.to_string();
    let msg = match std::error::Error::source(&e) {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.clone(),
    };
    // The driver's error kinds are private; its messages for them are stable.
    let connection = e.is_closed()
        || std::error::Error::source(&e).is_some_and(|c| c.is::<std::io::Error>())
        || matches!(
            kind.as_str(),
            "error connecting to server"
                | "timeout waiting for server"
                | "error communicating with the server"
                | "error performing TLS handshake"
                | "authentication error"
        );
    if connection {
        StoreError::Unavailable(msg)
    } else {
        StoreError::Internal(msg)
    }
}

/// A pool error: every way of not getting a connection is `Unavailable`.
pub fn pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => match db_err(e) {
            StoreError::Internal(m) => StoreError::Unavailable(m),
            other => other,
        },
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// Maps a unique violation of one of the named constraints to its conflict code, so handlers
/// report it without racy pre-checks; any other error goes through `db_err`.
pub fn unique_err(e: tokio_postgres::Error, map: &[(&str, &'static str)]) -> StoreError {
    let conflict = e
        .as_db_error()
        .filter(|db| *db.code() == SqlState::UNIQUE_VIOLATION)
        .and_then(|db| db.constraint())
        .and_then(|c| map.iter().find(|(name, _)| *name == c))
        .map(|(_, code)| *code);
    match conflict {
        Some(code) => StoreError::Conflict(code),
        None => db_err(e),
    }
}

/// Column `idx` of `row`, with conversion failures as `Internal`.
pub fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, StoreError> {
    row.try_get(idx)
        .map_err(|e| StoreError::Internal(format!("column {idx}: {e}: {e:?}")))
}

/// An unsigned count stored as BIGINT (the SQLite backend stores it as a 64-bit integer too, so
/// both accept the whole `u32` range).
pub fn get_u32(row: &Row, idx: usize) -> Result<u32, StoreError> {
    let v: i64 = get(row, idx)?;
    u32::try_from(v).map_err(|_| StoreError::Internal(format!("column {idx}: {v} out of range")))
}

pub fn get_opt_u32(row: &Row, idx: usize) -> Result<Option<u32>, StoreError> {
    let v: Option<i64> = get(row, idx)?;
    v.map(|v| {
        u32::try_from(v)
            .map_err(|_| StoreError::Internal(format!("column {idx}: {v} out of range")))
    })
    .transpose()
}

/// A timestamp as stored: truncated to whole microseconds the way the SQLite backend truncates
/// (`as_microsecond`), so both backends hand back the same instant. The driver would round.
pub fn ts(t: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t)
}

/// A 32-byte hash column; anything else reads as zeroes, as on SQLite.
pub fn hash32(v: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    if v.len() == 32 {
        out.copy_from_slice(v);
    }
    out
}

/// A value for a JSON column, sent as text and cast by the statement (arrays of `Json` are
/// not what the batch statements bind).
pub fn json_text<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Internal(format!("cannot encode JSON: {e}")))
}
