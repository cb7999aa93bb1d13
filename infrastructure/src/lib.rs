//! Adapters to the outside world: Postgres (event store, global log, subscriptions, users),
//! NATS JetStream (relay), password hashing and tokens, configuration.

/// The most an HTTP/1 server of ours (the API's hyper connections, the embedded S3 store)
/// buffers of what it reads on one connection. hyper grows a connection's read buffer while
/// it reads a large body (to 400 KiB by default) and keeps it while the connection lives;
/// 64 KiB reads keep uploads as fast.
pub const HTTP1_MAX_READ_BUFFER: usize = 64 * 1024;

pub mod audit;
pub mod auth;
pub mod budget;
pub mod cluster_client;
pub mod cluster_sim;
pub mod config;
pub mod dataset_workers;
pub mod db;
pub mod event_log;
pub mod event_store;
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
