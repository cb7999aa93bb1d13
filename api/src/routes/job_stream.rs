//! `GET /api/jobs/{id}/stream`: a job's live updates as Server-Sent Events, fed by
//! NATS through `live::JobFeeds`. Each event carries an `id` (its log position,
//! `<transactionId>.<globalPosition>`); a reconnect with `Last-Event-ID` first gets what it
//! missed from the event log, then live events, without gaps or repeats. The stream ends after
//! `complete`, a final `error`, or `cancelled`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use application::LogPosition;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use domain::job::telemetry::{LOGS_STREAM, METRICS_STREAM, PROGRESS_STREAM};
use infrastructure::event_log::read_aggregate_after;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::broadcast;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::AuthUser;
use crate::live::{bodies, from_stored, Frame, LiveEvent};
use crate::routes::jobs::{find_visible, parse_job_id};
use crate::state::AppState;

/// Events a reconnect may replay from the log before it must reconnect again.
const REPLAY_LIMIT: i64 = 10_000;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// An SSE comment line: keeps proxies and clients from timing an idle stream out.
const KEEP_ALIVE_COMMENT: &[u8] = b":\n\n";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream_job))
}

const STREAMS: [&str; 4] = ["job", METRICS_STREAM, PROGRESS_STREAM, LOGS_STREAM];

async fn replay(pool: &PgPool, job: &str, after: LogPosition) -> ApiResult<Vec<Arc<Frame>>> {
    let events = read_aggregate_after(pool, job, &STREAMS, after, REPLAY_LIMIT)
        .await
        .map_err(ApiError::internal)?;
    Ok(events
        .iter()
        .filter_map(from_stored)
        .map(|e| Arc::new(Frame::from(e)))
        .collect())
}

fn parse_last_event_id(headers: &HeaderMap) -> ApiResult<Option<LogPosition>> {
    // An empty header is no id at all.
    let Some(value) = headers.get("last-event-id").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::validation(
            "Last-Event-ID",
            "Last-Event-ID must be an id this stream sent (<transactionId>.<globalPosition>)",
        )
    };
    let text = value.to_str().map_err(|_| bad())?;
    let (tx, gp) = text.split_once('.').ok_or_else(bad)?;
    Ok(Some(LogPosition {
        transaction_id: tx.parse().map_err(|_| bad())?,
        global_position: gp.parse().map_err(|_| bad())?,
    }))
}

struct Cursor {
    _open: StreamSlot,
    pending: VecDeque<Arc<Frame>>,
    live: broadcast::Receiver<Arc<Frame>>,
    keep_alive: tokio::time::Interval,
    /// When the stream asks again whether its credential still holds.
    recheck: tokio::time::Interval,
    token: String,
    state: AppState,
    last: LogPosition,
    job: String,
    done: bool,
}

/// The event streams each user holds open on this instance, capped.
pub struct OpenStreams {
    per_user: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, usize>>,
    limit: usize,
}

impl OpenStreams {
    /// At most `limit` streams per user (0: no cap).
    pub fn new(limit: usize) -> Arc<OpenStreams> {
        Arc::new(OpenStreams {
            per_user: Default::default(),
            limit,
        })
    }

    /// A slot for one more stream of `user`, or `None` when it holds its limit already.
    fn take(self: &Arc<Self>, user: uuid::Uuid) -> Option<StreamSlot> {
        let mut open = self.per_user.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(user).or_default();
        if self.limit > 0 && *count >= self.limit {
            return None;
        }
        *count += 1;
        metrics::gauge!("brightrun_sse_streams_open").increment(1.0);
        Some(StreamSlot {
            streams: self.clone(),
            user,
        })
    }
}

/// One open stream, counted against its user and in `brightrun_sse_streams_open` for as
/// long as it lives (a client that goes away drops its stream, and the count with it).
struct StreamSlot {
    streams: Arc<OpenStreams>,
    user: uuid::Uuid,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        metrics::gauge!("brightrun_sse_streams_open").decrement(1.0);
        let mut open = self
            .streams
            .per_user
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

impl Cursor {
    /// Whether the token or key the stream was opened with no longer authenticates (revoked,
    /// its account deleted, expired). A database that cannot answer withdraws nothing.
    async fn credential_withdrawn(&self) -> bool {
        match crate::extract::authenticate(&self.state, &self.token).await {
            Ok(_) => false,
            Err(e) => e.status == axum::http::StatusCode::UNAUTHORIZED,
        }
    }

    /// The bytes to send next (an event, or a keep-alive comment every `KEEP_ALIVE`), or
    /// `None` when the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                if let Some(position) = event.position {
                    if position <= self.last {
                        continue;
                    }
                    self.last = position;
                }
                self.done = event.terminal;
                return Some(event.bytes.clone());
            }
            // The keep-alive ticks on its own interval, never reset by events (a stream of
            // ten thousand would otherwise re-arm a timer per event); a broadcast receive
            // loses nothing when the tick wins.
            let received = tokio::select! {
                received = self.live.recv() => received,
                _ = self.keep_alive.tick() => return Some(Bytes::from_static(KEEP_ALIVE_COMMENT)),
                _ = self.recheck.tick() => {
                    if self.credential_withdrawn().await {
                        tracing::info!(job = %self.job, "the stream's credential no longer holds; ending it");
                        return None;
                    }
                    continue;
                }
            };
            match received {
                Ok(event) => self.pending.push_back(event),
                // Too slow for the live buffer: catch up from the log.
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::info!(job = %self.job, missed, "stream lagged; catching up from the log");
                    // Boxed: the read is rare, and a stream must not carry its state while it waits.
                    match Box::pin(replay(&self.state.pool, &self.job, self.last)).await {
                        Ok(events) => self.pending.extend(events),
                        Err(_) => return None,
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Live progress of a job: `progress`, `metrics`, `stage`, `cost`, `checkpoint`,
/// `log`, `complete`, `error` (`canRetry`), `cancelled`. A fresh connection opens with the
/// job's current `stage`, `progress` and `cost` (events without an id). Each later event has
/// an id; reconnect with `Last-Event-ID` to get exactly what was missed. Keep-alive comments
/// every 15 s; the stream ends after `complete`, a final `error` or `cancelled`, and when its
/// token or API key stops authenticating (revoked, account deleted, expired).
#[utoipa::path(get, path = "/api/jobs/{id}/stream", tag = "jobs", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Job id (UUID)"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received, to resume"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`", content_type = "text/event-stream", body = String),
        (status = 400, description = "`VALIDATION_ERROR`: a Last-Event-ID this stream never sent", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`JOB_NOT_FOUND` (also another user's)", body = ErrorEnvelope),
        (status = 429, description = "`RATE_LIMITED`: the caller's open streams are at `SSE_STREAMS_PER_USER`, or its requests at their limit", body = ErrorEnvelope),
    ))]
async fn stream_job(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let job_id = parse_job_id(&id)?;
    let resume = parse_last_event_id(&headers)?;
    let token = crate::extract::bearer_token(&headers)
        .ok_or_else(ApiError::unauthorized)?
        .to_string();
    let job = job_id.to_string();
    // Whatever comes first, the log is read after the watch begins: what commits before the
    // watch is in that read, what commits after it arrives live (deduplicated by position).
    let (mut pending, last) = match resume {
        Some(after) => {
            find_visible(&state, principal, job_id).await?;
            (VecDeque::new(), after)
        }
        None => {
            // The row shows at least what the jobs projection had processed before it was
            // read; what committed after that is read from the log once the watch is on, so
            // nothing falls between the snapshot and the live feed.
            let projected = infrastructure::subscription::load_checkpoint(
                &state.pool,
                &projections::subscription_name("jobs"),
                false,
            )
            .await
            .map_err(ApiError::internal)?;
            let row = find_visible(&state, principal, job_id).await?;
            let snapshot: VecDeque<Arc<Frame>> = opening(&row)
                .into_iter()
                .map(|e| Arc::new(Frame::from(e)))
                .collect();
            (snapshot, projected)
        }
    };
    let slot = state.streams.take(principal.user_id.0).ok_or_else(|| {
        ApiError::rate_limited(
            format!(
                "at most {} event streams open per user: close one first",
                state.config.streams_per_user
            ),
            5,
        )
    })?;
    let live = state
        .feeds
        .watch(job_id)
        .await
        .map_err(ApiError::internal)?;
    if !pending.back().is_some_and(|e| e.terminal) {
        pending.extend(replay(&state.pool, &job, last).await?);
    }
    let recheck = state.config.stream_recheck;
    let cursor = Cursor {
        _open: slot,
        recheck: every(recheck),
        token,
        state: state.clone(),
        pending,
        live,
        keep_alive: every(KEEP_ALIVE),
        last,
        job,
        done: false,
    };
    metrics::counter!("brightrun_sse_streams_opened_total").increment(1);
    // Each stream sends the frames its job's feed rendered once (no per-stream encoding).
    let stream = futures::stream::unfold(cursor, |mut cursor| async move {
        let bytes = cursor.next().await?;
        Some((Ok::<_, Infallible>(bytes), cursor))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Ticks every `period`, the first a period from now; a late tick is not caught up.
fn every(period: Duration) -> tokio::time::Interval {
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every
}

/// A fresh connection's first events: where the job stands now; its end if it has ended.
fn opening(row: &projections::jobs::queries::JobRow) -> Vec<LiveEvent> {
    let spent = row.final_cost.unwrap_or(row.current_cost);
    let mut out = Vec::new();
    out.extend(bodies::stage(
        &row.current_stage,
        format!("The job is {}", row.status),
    ));
    out.extend(bodies::progress(
        row.progress,
        row.current_epoch,
        row.current_step,
        row.total_steps,
        Value::Null,
    ));
    out.extend(bodies::cost(row.current_cost, row.estimated_total_cost));
    out.extend(match row.status.as_str() {
        "completed" => bodies::complete(row.id, row.artifact_id, spent),
        "failed" => bodies::error(&row.error_message, &row.error_code, false, row.retry_count),
        "cancelled" => bodies::cancelled(row.id, spent, row.refund_amount.unwrap_or_default()),
        _ => None,
    });
    out
}
