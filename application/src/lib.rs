//! Command services and the ports they need. The services read the clock, make ids and
//! call adapters, then hand a complete command to the aggregate through cqrs-es.

pub mod api_keys;
pub mod appended;
pub mod cluster;
pub mod datasets;
pub mod jobs;
pub mod models;
pub mod ports;
pub mod saga;
pub mod validation;

use std::collections::HashMap;

use cqrs_es::AggregateError;
use domain::ids::UserId;

pub use ports::{
    ByteChunks, Clock, LogPosition, LogPositions, ObjectReader, ObjectStore, PresignedRequest,
    PutStreamError,
};

/// Who asked and why: recorded as event metadata on everything a command writes.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub user_id: UserId,
    pub request_id: String,
    /// The conversation this command belongs to; the request id when it starts one.
    pub correlation_id: String,
    /// The event or request that caused this command, when there is one.
    pub causation_id: Option<String>,
}

impl CommandContext {
    pub fn metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::from([
            ("userId".to_string(), self.user_id.to_string()),
            ("requestId".to_string(), self.request_id.clone()),
            ("correlationId".to_string(), self.correlation_id.clone()),
        ]);
        if let Some(c) = &self.causation_id {
            m.insert("causationId".to_string(), c.clone());
        }
        m
    }
}

/// How many times a repeatable command is decided again after losing an optimistic-concurrency
/// race, before `Conflict` reaches the caller.
pub const CONFLICT_RETRIES: u32 = 8;

/// Runs `attempt` (one decision and append) again while it loses an optimistic-concurrency
/// race and `repeatable` says deciding again on the newer state is safe. Each attempt
/// reloads the aggregate, so the command is decided on what the winner wrote.
pub(crate) async fn retry_conflicts<E, F, Fut>(
    repeatable: bool,
    mut attempt: F,
) -> Result<(), cqrs_es::AggregateError<E>>
where
    E: std::error::Error,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), cqrs_es::AggregateError<E>>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(cqrs_es::AggregateError::AggregateConflict)
                if repeatable && tries < CONFLICT_RETRIES =>
            {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(u64::from(tries) * 3)).await;
            }
            other => return other,
        }
    }
}

/// Runs `command` on aggregate `id` (a conflict retried when repeating it is safe) and
/// answers where its last event landed: every command service's way of executing.
pub(crate) async fn execute<A, ES, Id>(
    cqrs: &cqrs_es::CqrsFramework<A, ES>,
    positions: &dyn LogPositions,
    ctx: &CommandContext,
    id: Id,
    command: A::Command,
    repeatable: bool,
) -> Result<datasets::Receipt<Id>, AppError<A::Error>>
where
    A: cqrs_es::Aggregate,
    A::Command: Clone,
    ES: cqrs_es::EventStore<A>,
    Id: std::fmt::Display,
{
    let aggregate_id = id.to_string();
    let (outcome, appended) = appended::capture(retry_conflicts(repeatable, || {
        cqrs.execute_with_metadata(&aggregate_id, command.clone(), ctx.metadata())
    }))
    .await;
    outcome?;
    // A command that appended nothing (a repeat) answers where the aggregate already stood.
    let position = match appended {
        Some(position) => Some(position),
        None => positions
            .last_position(A::TYPE, &aggregate_id)
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?,
    };
    Ok(datasets::Receipt { id, position })
}

/// What a command service answers when a command is refused or cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum AppError<E: std::error::Error> {
    /// A rule of the business refused the command.
    #[error(transparent)]
    Rejected(E),
    /// Another command changed the aggregate first (optimistic concurrency).
    #[error("the resource was changed by another request; retry")]
    Conflict,
    /// The event store is unreachable (a lost connection): the command can be sent again.
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl<E: std::error::Error> From<AggregateError<E>> for AppError<E> {
    fn from(err: AggregateError<E>) -> Self {
        match err {
            AggregateError::UserError(e) => AppError::Rejected(e),
            AggregateError::AggregateConflict => AppError::Conflict,
            AggregateError::DatabaseConnectionError(e) => AppError::Unavailable(e.to_string()),
            other => AppError::Internal(other.to_string()),
        }
    }
}
