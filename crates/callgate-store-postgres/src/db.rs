//! Statement helpers over a pooled connection or a transaction. Statements are prepared once
//! per connection (`prepare_cached`) and errors arrive as `StoreError`.

use crate::util::{db_err, unique_err};
use callgate_store::{StoreError, StoreResult};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub async fn rows<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> StoreResult<Vec<Row>> {
    let st = c.prepare_cached(sql).await.map_err(db_err)?;
    c.query(&st, p).await.map_err(db_err)
}

pub async fn opt_row<C: GenericClient>(
    c: &C,
    sql: &str,
    p: Params<'_>,
) -> StoreResult<Option<Row>> {
    let st = c.prepare_cached(sql).await.map_err(db_err)?;
    c.query_opt(&st, p).await.map_err(db_err)
}

/// The one row the statement returns; none is `NotFound`.
pub async fn one_row<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> StoreResult<Row> {
    opt_row(c, sql, p).await?.ok_or(StoreError::NotFound)
}

pub async fn exec<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> StoreResult<u64> {
    let st = c.prepare_cached(sql).await.map_err(db_err)?;
    c.execute(&st, p).await.map_err(db_err)
}

/// Like `exec`, with unique violations of the named constraints as their conflict codes.
pub async fn exec_unique<C: GenericClient>(
    c: &C,
    sql: &str,
    p: Params<'_>,
    map: &[(&str, &'static str)],
) -> StoreResult<u64> {
    let st = c.prepare_cached(sql).await.map_err(db_err)?;
    c.execute(&st, p).await.map_err(|e| unique_err(e, map))
}

/// Like `one_row`, with unique violations of the named constraints as their conflict codes.
pub async fn one_row_unique<C: GenericClient>(
    c: &C,
    sql: &str,
    p: Params<'_>,
    map: &[(&str, &'static str)],
) -> StoreResult<Row> {
    let st = c.prepare_cached(sql).await.map_err(db_err)?;
    c.query_opt(&st, p)
        .await
        .map_err(|e| unique_err(e, map))?
        .ok_or(StoreError::NotFound)
}
