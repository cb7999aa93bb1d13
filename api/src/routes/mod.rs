pub mod auth;
pub mod datasets;
pub mod jobs;
pub mod ops;
