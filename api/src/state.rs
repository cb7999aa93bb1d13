use std::sync::Arc;

use application::api_keys::ApiKeyCommands;
use application::datasets::DatasetCommands;
use application::jobs::JobCommands;
use application::models::ModelCommands;
use application::{Clock, ObjectStore};
use domain::api_key::ApiKey;
use domain::dataset::Dataset;
use domain::job::Job;
use domain::model::Model;
use infrastructure::auth::TokenKeys;
use infrastructure::event_store::EventStore;
use infrastructure::subscription::Leadership;
use infrastructure::users::Users;
use infrastructure::Config;
use sqlx::PgPool;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub tokens: TokenKeys,
    pub users: Users,
    pub clock: Arc<dyn Clock>,
    pub datasets: Arc<DatasetCommands<EventStore<Dataset>>>,
    pub jobs: Arc<JobCommands<EventStore<Job>>>,
    pub models: Arc<ModelCommands<EventStore<Model>>>,
    pub api_keys: Arc<ApiKeyCommands<EventStore<ApiKey>>>,
    pub leadership: Leadership,
    pub objects: Arc<dyn ObjectStore>,
    pub feeds: Arc<crate::live::JobFeeds>,
    /// The Content-Security-Policy of the console's pages (`security_headers`).
    pub console_policy: axum::http::HeaderValue,
    /// The event streams open on this instance, per user.
    pub streams: Arc<crate::routes::job_stream::OpenStreams>,
    /// Calls to inference engines (chat completions).
    pub http: reqwest::Client,
}
