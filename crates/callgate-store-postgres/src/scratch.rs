//! Throwaway databases for tests and the benchmark: `ScratchDatabase::create(admin_url)` makes a
//! fresh, empty database `cg_test_<random>` on the server `admin_url` points at and drops it
//! again when done, so every test starts from nothing and tests can run in parallel.

use crate::util::db_err;
use callgate_store::{StoreError, StoreResult};
use tokio_postgres::NoTls;

/// A database that exists for the lifetime of this value.
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl ScratchDatabase {
    /// Creates the database through `admin_url`, a `postgres://` URL of a role allowed to
    /// create databases (its own database is only used to connect).
    pub async fn create(admin_url: &str) -> StoreResult<Self> {
        Self::create_with_prefix(admin_url, "cg_test_").await
    }

    /// `create` with another name prefix (ASCII letters, digits and `_`), so a database left
    /// over by an interrupted run says whose it was.
    pub async fn create_with_prefix(admin_url: &str, prefix: &str) -> StoreResult<Self> {
        Self::create_named(admin_url, prefix, None).await
    }

    /// `create_with_prefix` as a copy of `template`, another scratch database of the same
    /// server with no session connected to it (PostgreSQL's `CREATE DATABASE … TEMPLATE`).
    pub async fn copy_of(template: &ScratchDatabase, prefix: &str) -> StoreResult<Self> {
        Self::create_named(&template.admin_url, prefix, Some(&template.name)).await
    }

    async fn create_named(
        admin_url: &str,
        prefix: &str,
        template: Option<&str>,
    ) -> StoreResult<Self> {
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StoreError::Internal(format!(
                "invalid database name prefix {prefix:?}"
            )));
        }
        let name = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
        let url = with_database(admin_url, &name)?;
        let admin = connect(admin_url).await?;
        // Names are checked prefixes and hex digits, so they need no quoting.
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
            None => format!("CREATE DATABASE {name}"),
        };
        admin.batch_execute(&sql).await.map_err(db_err)?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
            dropped: false,
        })
    }

    /// The URL of the scratch database (the admin URL with the database name replaced).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Leaves the database in place (for a look afterwards); returns its name.
    pub fn keep(mut self) -> String {
        self.dropped = true;
        self.name.clone()
    }

    /// Drops the database now, closing whatever connections still use it.
    pub async fn drop_database(mut self) -> StoreResult<()> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await
    }
}

impl Drop for ScratchDatabase {
    /// A fallback for values dropped without `drop_database` (a panicking test, a `TestApp`
    /// going out of scope). `Drop` cannot await and may run on a runtime thread, so the drop
    /// runs on a thread with a runtime of its own.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let worker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            runtime.block_on(drop_database(&admin_url, &name))
        });
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop scratch database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop scratch database {}", self.name),
        }
    }
}

async fn connect(url: &str) -> StoreResult<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|e| match db_err(e) {
                StoreError::Unavailable(m) | StoreError::Internal(m) => {
                    StoreError::Unavailable(format!("cannot connect to the admin database: {m}"))
                }
                other => other,
            })?;
    tokio::spawn(async move {
        // Ends when the client is dropped; an error here only repeats the client's own.
        let _ = connection.await;
    });
    Ok(client)
}

async fn drop_database(admin_url: &str, name: &str) -> StoreResult<()> {
    let admin = connect(admin_url).await?;
    // FORCE (PostgreSQL 13+) closes the pool connections a test may still hold.
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .map_err(db_err)
}

/// `url` with its database name replaced by `db`, keeping credentials, host and parameters.
pub fn with_database(url: &str, db: &str) -> StoreResult<String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        StoreError::Internal("expected a postgres://user@host:port/database URL".into())
    })?;
    let (location, query) = match rest.split_once('?') {
        Some((l, q)) => (l, Some(q)),
        None => (rest, None),
    };
    let authority = location.split('/').next().unwrap_or(location);
    let mut out = format!("{scheme}://{authority}/{db}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_everything_else_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x").ok(),
            Some("postgres://postgres@127.0.0.1:5432/x".to_owned())
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x").ok(),
            Some("postgresql://u:p@h/x?sslmode=disable".to_owned())
        );
        assert_eq!(
            with_database("postgres://h:1", "x").ok(),
            Some("postgres://h:1/x".to_owned())
        );
    }
}
