//! Adapters to the outside world: Postgres (event store, global log, subscriptions, users),
//! NATS JetStream (relay), password hashing and tokens, configuration.

/// The most an HTTP/1 server of ours (the API's hyper connections, the embedded S3 store)
/// buffers of what it reads on one connection. hyper grows a connection's read buffer while
/// it reads a large body (to 400 KiB by default) and keeps it while the connection lives;
/// 64 KiB reads keep uploads as fast.
pub const HTTP1_MAX_READ_BUFFER: usize = 64 * 1024;

/// How an HTTP server of ours (the API, the embedded S3 store) serves a connection: HTTP/1
/// and HTTP/2, read buffers capped at `HTTP1_MAX_READ_BUFFER`, and a timer on every
/// connection, so a slow or silent client cannot hold a socket for ever:
/// - HTTP/1: a request head must arrive whole within `header_read_timeout`, counted from
///   when the server starts waiting for it: for a new connection and for each next request
///   of a kept-alive one, so an idle connection is closed after the same time.
/// - HTTP/2: a ping every `header_read_timeout`; a peer that does not answer within it is
///   dropped.
pub fn http_connections(
    header_read_timeout: std::time::Duration,
) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(HTTP1_MAX_READ_BUFFER)
        .header_read_timeout(header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(header_read_timeout)
        .keep_alive_timeout(header_read_timeout);
    builder
}

pub mod audit;
pub mod auth;
pub mod budget;
pub mod cluster_client;
pub mod cluster_sim;
pub mod config;
pub mod dataset_workers;
pub mod db;
pub mod deployer;
pub mod event_log;
pub mod event_store;
pub mod inference;
pub mod jobs;
pub mod models;
pub mod parking;
pub mod rate_limits;
pub mod relay;
pub mod s3;
pub mod saga;
pub mod slurm;
pub mod subscription;
pub mod tokenizer;
pub mod users;

pub use config::Config;
