//! Conversions between records and SQLite values.

use callgate_store::StoreError;
use jiff::Timestamp;
use rusqlite::ErrorCode;

pub fn db_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::CannotOpen
                    | ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

/// True for a UNIQUE or PRIMARY KEY violation.
pub fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

pub fn ts(t: Timestamp) -> i64 {
    t.as_microsecond()
}

/// The stored precision (microseconds), for times written inside JSON.
pub fn micros(t: Timestamp) -> Timestamp {
    from_ts(ts(t))
}

pub fn from_ts(v: i64) -> Timestamp {
    Timestamp::from_microsecond(v).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub fn opt_ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(from_ts)
}

pub fn json_text<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Internal(format!("encode json: {e}")))
}

pub fn parse_json<T: serde::de::DeserializeOwned>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub fn parse_opt_json<T: serde::de::DeserializeOwned>(
    s: Option<String>,
) -> rusqlite::Result<Option<T>> {
    s.map(|s| parse_json(&s)).transpose()
}

pub fn parse_uuid(s: &str) -> rusqlite::Result<uuid::Uuid> {
    uuid::Uuid::parse_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// SQL appending one entry (the SQL text expression `$entry`, a compact history entry, see
/// `event_text`) to a run's `events` array, as text: the history is written only by these
/// updates, and SQLite's `json_insert` would parse and re-serialise the whole array at every
/// status change. Every history ends in the array's own `]` (entries written before version 9
/// are objects, later ones arrays, and a history may hold both), so exactly that last byte
/// goes. It is cut as a blob: on text, `substr` and `length` count characters from the start
/// (~2 400 instructions per status change for a ~200-byte history, measured), on a blob they
/// count bytes, and the cast only relabels the value.
macro_rules! append_event {
    ($entry:literal) => {
        concat!(
            "CASE WHEN events = '[]' THEN '[' || ",
            $entry,
            " || ']' ELSE substr(CAST(events AS BLOB), 1, length(CAST(events AS BLOB)) - 1) || ',' || ",
            $entry,
            " || ']' END"
        )
    };
}
pub(crate) use append_event;
