pub mod auth;
pub mod datasets;
pub mod ops;
