//! Postgres bootstrap: create the database when it is missing, connect, migrate.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// Creates the database named in `url` if it does not exist (concurrent callers are fine).
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let options =
        PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid Postgres URL")?;
    let name = options.get_database().unwrap_or("postgres").to_string();
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .with_context(|| format!("cannot reach Postgres at {}", options.get_host()))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(err) = sqlx::query(&sql).execute(&mut admin).await {
            // Another process created it between our check and our CREATE.
            let raced = err
                .as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|c| c == "42P04" || c == "23505");
            if !raced {
                return Err(err).context("cannot create the database");
            }
        } else {
            tracing::info!(database = %name, "created database");
        }
    }
    admin.close().await.ok();
    Ok(())
}

/// A pool whose sessions cannot sit idle inside a transaction: an open transaction holds
/// back every global-log reader (see `event_log`).
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)?
        .options([("idle_in_transaction_session_timeout", "30s")])
        .disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .context("cannot connect to Postgres")?;
    Ok(pool)
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("../migrations")
        .run(pool)
        .await
        .context("database migration failed")?;
    Ok(())
}

/// Everything `serve` and `migrate` need: database created, pool open, schema current.
pub async fn prepare(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    ensure_database(url).await?;
    let pool = connect(url, max_connections).await?;
    migrate(&pool).await?;
    Ok(pool)
}

/// How long a readiness check waits for Postgres: a probe wants its answer in about a
/// second, not after the pool's acquire timeout (10 s) when the server is gone.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether Postgres answers a query within `PING_TIMEOUT`.
pub async fn ping(pool: &PgPool) -> bool {
    let query = sqlx::query("SELECT 1").execute(pool);
    matches!(tokio::time::timeout(PING_TIMEOUT, query).await, Ok(Ok(_)))
}
