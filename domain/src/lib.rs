//! BrightRun's business rules: aggregates, commands, events and value objects.
//!
//! Nothing here performs I/O or reads the clock: everything a decision needs arrives in the
//! command, so every rule is tested with plain given/when/then tests.

pub mod audit;
pub mod budget;
pub mod costs;
pub mod dataset;
pub mod identity;
pub mod ids;
pub mod job;
pub mod model;
pub mod notifications;
pub mod upcast;
pub mod validation;

pub use validation::FieldError;
