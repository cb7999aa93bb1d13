//! The cqrs-es event store over Postgres (plain event-sourced mode only: its snapshot and
//! aggregate modes apply events twice, see ARCHITECTURE.md "Known pitfalls").

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, CqrsFramework};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;

pub type EventStore<A> = PersistedEventStore<PostgresEventRepository, A>;

/// A framework with no in-process queries: read models are fed from the global log by
/// durable subscriptions, never by cqrs-es `Query` dispatch (lost on a crash).
pub fn framework<A: Aggregate>(
    pool: PgPool,
    services: A::Services,
) -> CqrsFramework<A, EventStore<A>> {
    CqrsFramework::new(store(pool), vec![], services)
}

/// The event store alone, to load aggregates outside a command.
pub fn store<A: Aggregate>(pool: PgPool) -> EventStore<A> {
    PersistedEventStore::new_event_store(PostgresEventRepository::new(pool))
        .with_upcasters(vec![Box::new(domain::upcast::ChainUpcaster)])
}
