//! End-to-end tests against real Postgres, NATS JetStream and HTTP.

mod common;

mod api_conventions;
mod api_keys;
mod auth;
mod cluster_sim;
mod costs_audit;
mod crash;
mod datasets;
mod direct_upload;
mod faults;
mod global_log;
mod hostile;
mod inference;
mod job_stream;
mod jobs;
mod lifecycle;
mod models;
mod openai_api;
mod openapi;
mod parking;
mod preview;
mod rate_limits;
mod relay;
mod replay;
mod saga;
mod serving;
mod slurm;
mod subscriptions;
mod upload;
