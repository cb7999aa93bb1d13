pub mod auth;
pub mod costs;
pub mod datasets;
pub mod job_stream;
pub mod jobs;
pub mod models;
pub mod notifications;
pub mod ops;
