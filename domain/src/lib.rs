//! BrightRun's business rules: aggregates, commands, events and value objects.
//!
//! Nothing here performs I/O or reads the clock: everything a decision needs arrives in the
//! command, so every rule is tested with plain given/when/then tests.

/// The cqrs-es glue of an aggregate whose commands are decided by its pure
/// `decide(&self, command) -> Result<Vec<Event>, Error>` (no services), written once:
/// `handle` writes what `decide` answers; `apply` is the given body.
macro_rules! decided_aggregate {
    ($aggregate:ty, $type_name:literal, $command:ty, $event:ty, $error:ty,
     fn apply(&mut $this:ident, $e:ident: $ev:ty) $body:block) => {
        impl cqrs_es::Aggregate for $aggregate {
            const TYPE: &'static str = $type_name;
            type Command = $command;
            type Event = $event;
            type Error = $error;
            type Services = ();

            async fn handle(
                &mut self,
                command: Self::Command,
                _services: &Self::Services,
                sink: &cqrs_es::event_sink::EventSink<Self>,
            ) -> Result<(), Self::Error> {
                for event in self.decide(command)? {
                    sink.write(event, self).await;
                }
                Ok(())
            }

            fn apply(&mut $this, $e: $ev) $body
        }
    };
}

pub mod api_key;
pub mod audit;
pub mod budget;
pub mod costs;
pub mod dataset;
pub mod identity;
pub mod ids;
pub mod job;
pub mod model;
pub mod notifications;
pub mod rate_limit;
pub mod upcast;
pub mod validation;

pub use validation::FieldError;
