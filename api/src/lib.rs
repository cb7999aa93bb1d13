//! The HTTP API and the `brightrun` binary's commands.

pub mod app;
pub mod contract;
pub mod demo;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod live;
pub mod openapi;
pub mod request_id;
pub mod routes;
pub mod state;
pub mod telemetry;

pub use app::{router, serve, start, Roles, Service};
