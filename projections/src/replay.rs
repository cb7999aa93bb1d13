//! Rebuild a read model from position 0, blue/green.
//!
//! The projector runs into fresh copies of its tables in a schema of their own (its SQL uses
//! unqualified names, so `search_path` points it there). When the copy has caught up, one
//! transaction locks the live checkpoint (live batches wait), brings both the copy and the
//! live tables to the same position, counts the rows on which they differ, swaps the copy in
//! and sets the checkpoint. A correct projector reports zero differences.

use std::collections::HashSet;
use std::sync::Arc;

use application::LogPosition;
use infrastructure::event_log::read_page;
use infrastructure::parking;
use infrastructure::subscription::{ensure_checkpoint, load_checkpoint, save_checkpoint};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{subscription_name, Projector};

const BATCH: i64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub projection: String,
    /// Events read from the log (every aggregate type; the projector ignores others).
    pub events: u64,
    /// Rows present in one version and not the other, summed over the tables, compared at
    /// the same log position just before the swap.
    pub differences: u64,
    pub position: LogPosition,
}

fn shadow_schema(projector: &dyn Projector) -> String {
    format!("replay_{}", projector.name())
}

pub async fn replay(pool: &PgPool, projector: Arc<dyn Projector>) -> anyhow::Result<ReplayReport> {
    let schema = shadow_schema(&*projector);
    let name = subscription_name(projector.name());
    ensure_checkpoint(pool, &name).await?;

    let mut tx = pool.begin().await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut *tx)
        .await?;
    copy_tables(&mut tx, projector.tables(), &schema).await?;
    tx.commit().await?;

    // Events the live projection parked stay out of the copy too (until a retry handles them).
    let parked: HashSet<Uuid> = parking::parked_ids(pool, &name)
        .await?
        .into_iter()
        .collect();
    // Catch up in short transactions, so the rebuild never holds the log back for long.
    let mut cursor = LogPosition::START;
    let mut events = 0u64;
    loop {
        let mut tx = pool.begin().await?;
        let n;
        (cursor, n) = apply_batch(
            &mut tx,
            &*projector,
            &parked,
            &format!("{schema}, public"),
            cursor,
        )
        .await?;
        tx.commit().await?;
        events += n;
        if n == 0 {
            break;
        }
    }

    // The swap: live batches wait on the checkpoint row until this commits.
    let mut tx = pool.begin().await?;
    let mut live = load_checkpoint(&mut *tx, &name, true).await?;
    let parked: HashSet<Uuid> = parking::parked_ids(&mut *tx, &name)
        .await?
        .into_iter()
        .collect();
    loop {
        let (next, n) = apply_batch(
            &mut tx,
            &*projector,
            &parked,
            &format!("{schema}, public"),
            cursor,
        )
        .await?;
        cursor = next;
        events += n;
        if n == 0 {
            break;
        }
    }
    while live < cursor {
        let (next, n) =
            apply_batch_until(&mut tx, &*projector, &parked, "public", live, Some(cursor)).await?;
        if n == 0 {
            break;
        }
        live = next;
    }
    let mut differences = 0u64;
    for table in projector.tables() {
        let d: i64 = sqlx::query_scalar(&format!(
            "SELECT (SELECT count(*) FROM (SELECT * FROM public.{table} EXCEPT ALL SELECT * FROM {schema}.{table}) a) \
                  + (SELECT count(*) FROM (SELECT * FROM {schema}.{table} EXCEPT ALL SELECT * FROM public.{table}) b)"
        ))
        .fetch_one(&mut *tx)
        .await?;
        differences += d as u64;
    }
    sqlx::query("SET LOCAL search_path TO public")
        .execute(&mut *tx)
        .await?;
    for table in projector.tables() {
        sqlx::query(&format!("DROP TABLE public.{table}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("ALTER TABLE {schema}.{table} SET SCHEMA public"))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut *tx)
        .await?;
    save_checkpoint(&mut *tx, &name, cursor.max(live)).await?;
    tx.commit().await?;
    tracing::info!(
        projection = projector.name(),
        events,
        differences,
        "replayed"
    );
    Ok(ReplayReport {
        projection: projector.name().to_string(),
        events,
        differences,
        position: cursor,
    })
}

/// Empty copies of the live `tables` in `schema` (which must exist), as a fold writes them:
/// columns, defaults, constraints, indexes and triggers. LIKE copies no triggers, so each
/// copy gets the live table's own (a count kept by one, say) written against the copy; with
/// only pg_catalog on the path every name in a definition comes out qualified, so the live
/// table's name is found exactly.
pub async fn copy_tables(
    conn: &mut PgConnection,
    tables: &[&str],
    schema: &str,
) -> anyhow::Result<()> {
    for table in tables {
        sqlx::query(&format!(
            "CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL)"
        ))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("SET LOCAL search_path TO pg_catalog")
        .execute(&mut *conn)
        .await?;
    for table in tables {
        let definitions: Vec<String> = sqlx::query_scalar(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger \
             WHERE tgrelid = $1::regclass AND NOT tgisinternal ORDER BY tgname",
        )
        .bind(format!("public.{table}"))
        .fetch_all(&mut *conn)
        .await?;
        let live = format!(" ON public.{table} ");
        for definition in definitions {
            anyhow::ensure!(
                definition.contains(&live),
                "cannot copy a trigger of {table}: {definition}"
            );
            let copy = definition.replacen(&live, &format!(" ON {schema}.{table} "), 1);
            sqlx::query(&copy).execute(&mut *conn).await?;
        }
    }
    sqlx::query("SET LOCAL search_path TO public")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn apply_batch(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    parked: &HashSet<Uuid>,
    search_path: &str,
    after: LogPosition,
) -> anyhow::Result<(LogPosition, u64)> {
    apply_batch_until(conn, projector, parked, search_path, after, None).await
}

/// Applies the events after `after` up to `until` (inclusive, when given) with the given
/// search path, passing over the parked ones.
async fn apply_batch_until(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    parked: &HashSet<Uuid>,
    search_path: &str,
    after: LogPosition,
    until: Option<LogPosition>,
) -> anyhow::Result<(LogPosition, u64)> {
    sqlx::query(&format!("SET LOCAL search_path TO {search_path}"))
        .execute(&mut *conn)
        .await?;
    let page = read_page(&mut *conn, after, until, BATCH, projector.interest()).await?;
    let Some(last) = page.last else {
        return Ok((after, 0));
    };
    let mut events = page.events;
    events.retain(|e| !parked.contains(&e.event_id));
    projector.apply_all(conn, &events).await?;
    Ok((last, page.read as u64))
}
