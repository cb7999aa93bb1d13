//! Assembling the service: the HTTP router and the background roles (projections, relay).

use std::sync::Arc;

use application::api_keys::ApiKeyCommands;
use application::cluster::GpuCluster;
use application::datasets::DatasetCommands;
use application::jobs::JobCommands;
use application::models::Deployer;
use application::models::ModelCommands;
use application::ports::SystemClock;
use application::saga::{SagaOptions, TrainingSaga};
use application::validation::DatasetValidation;
use application::ObjectStore;
use axum::extract::DefaultBodyLimit;
use axum::{middleware, Router};
use domain::dataset::validator::ValidatorOptions;
use infrastructure::auth::TokenKeys;
use infrastructure::budget::BudgetWatcher;
use infrastructure::cluster_client::{ClientOptions, HttpCluster};
use infrastructure::cluster_sim::server::{ClusterSim, SimSettings};
use infrastructure::dataset_workers::{self, PurgeOptions, ValidationWorker};
use infrastructure::deployer::{LocalDeployer, NoEngine};
use infrastructure::event_log::PgLogPositions;
use infrastructure::inference::{EngineHost, EngineSettings, LlamaCppEngines};
use infrastructure::jobs::{PgDatasetLookup, PgTelemetryStore};
use infrastructure::s3::{EmbeddedS3, S3Settings, S3Store};
use infrastructure::saga::{DriverOptions, SagaFeeder};
use infrastructure::slurm::{SlurmCluster, SlurmServing};
use infrastructure::subscription::{self, Leadership, RunnerOptions, Subscriber};
use infrastructure::tokenizer::O200k;
use infrastructure::users::Users;
use infrastructure::{db, event_store, relay, Config};
use projections::Projection;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::openapi::ApiDoc;
use crate::routes;
use crate::state::AppState;

/// Which parts of the service this process runs. Several processes can share one database:
/// each subscription is led by one of them at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub relay: bool,
    pub projections: bool,
    /// Dataset validation and purging.
    pub workers: bool,
    /// The training saga (drives jobs on the GPU cluster).
    pub saga: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        api: true,
        relay: true,
        projections: true,
        workers: true,
        saga: true,
    };

    pub fn parse(list: &str) -> Result<Roles, String> {
        let mut roles = Roles {
            api: false,
            relay: false,
            projections: false,
            workers: false,
            saga: false,
        };
        for role in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "all" => roles = Roles::ALL,
                "api" => roles.api = true,
                "relay" => roles.relay = true,
                "projections" => roles.projections = true,
                "workers" => roles.workers = true,
                "saga" => roles.saga = true,
                other => {
                    return Err(format!(
                        "unknown role '{other}' (api, relay, projections, workers, saga, all)"
                    ))
                }
            }
        }
        Ok(roles)
    }
}

pub fn router_parts() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::auth::router())
        .merge(routes::api_keys::router())
        .merge(routes::datasets::router())
        .merge(routes::jobs::router())
        .merge(routes::job_stream::router())
        .merge(routes::models::router())
        .merge(routes::costs::router())
        .merge(routes::notifications::router())
        .merge(routes::ops::router())
        .merge(routes::cluster_webhook::router())
        .merge(routes::openai::router())
        .split_for_parts();
    (routes, api)
}

pub fn router(state: AppState) -> Router {
    let (routes, api) = router_parts();
    let max_body = state.config.max_body_bytes;
    routes
        .merge(
            SwaggerUi::new("/api/docs")
                .external_url_unchecked("/api/openapi.json", crate::openapi::document_of(api)),
        )
        .fallback(crate::console::serve)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::rate_limit::middleware,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::security_headers::middleware,
        ))
        .layer(middleware::from_fn(crate::request_id::middleware))
        .with_state(state)
}

/// A started service: its state and background tasks.
pub struct Service {
    pub state: AppState,
    /// The embedded S3-protocol server, when no endpoint is configured (stops with the service).
    pub embedded_s3: Option<EmbeddedS3>,
    /// The in-process GPU cluster simulator, when no `CLUSTER_URL` is configured.
    pub cluster_sim: Option<ClusterSim>,
    pub shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Service {
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Serves this service's router on `listener` until `shutdown`, each connection with the
    /// configured timer (`http_server::run`). Owns what it needs, so it can be spawned.
    pub fn serve_http(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send + 'static {
        crate::http_server::run(
            listener,
            self.router(),
            self.state.config.http_header_read_timeout,
            shutdown,
        )
    }

    /// Stops the background roles and waits for them (their locks are released).
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.state.pool.close().await;
    }
}

pub async fn start(
    mut config: Config,
    roles: Roles,
    runner: RunnerOptions,
) -> anyhow::Result<Service> {
    // Webhooks of the in-process simulator are signed with a secret made up here.
    if config.cluster_webhook_url.is_some()
        && config.cluster_url.is_none()
        && config.slurm.is_none()
        && config.cluster_webhook_secret.is_none()
    {
        config.cluster_webhook_secret = Some(uuid::Uuid::new_v4().simple().to_string());
    }
    crate::telemetry::install_metrics();
    // sqlx and async-nats bring ring, the AWS client aws-lc-rs: pick one for rustls.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pool = db::prepare(&config.database_url, config.database_max_connections).await?;
    let nats = relay::connect(&config.nats_url).await?;
    let leadership = Leadership::default();
    let shutdown = CancellationToken::new();
    let mut subscribers: Vec<Arc<dyn Subscriber>> = Vec::new();
    if roles.projections {
        for projector in projections::all() {
            subscribers.push(Arc::new(Projection::with_parking(
                projector,
                config.subscription_park_after,
            )));
        }
    }
    if roles.relay {
        subscribers.push(Arc::new(relay::Relay::new(
            nats.clone(),
            &config.nats_stream,
            &config.nats_subject_prefix,
        )));
    }
    let (objects, embedded_s3) = object_store(&config).await?;
    let clock = Arc::new(SystemClock);
    let wakeup = event_store::Wakeup::start(pool.clone());
    let datasets = Arc::new(DatasetCommands::new(
        event_store::framework(pool.clone(), &wakeup, ()),
        Arc::new(PgLogPositions(pool.clone())),
        clock.clone(),
        Arc::new(projections::jobs::queries::ActiveJobsUsage(pool.clone())),
        config.s3_bucket.clone(),
        config.upload_limit_bytes,
    ));
    let jobs = Arc::new(JobCommands::new(
        event_store::framework(pool.clone(), &wakeup, ()),
        event_store::store(pool.clone(), &wakeup),
        Arc::new(PgDatasetLookup(pool.clone())),
        Arc::new(PgTelemetryStore(pool.clone(), wakeup.clone())),
        Arc::new(PgLogPositions(pool.clone())),
        clock.clone(),
        config.rates.clone(),
    ));
    let models = Arc::new(ModelCommands::new(
        event_store::framework(pool.clone(), &wakeup, ()),
        event_store::store(pool.clone(), &wakeup),
        Arc::new(PgLogPositions(pool.clone())),
        clock.clone(),
        deployer(&config, objects.clone()),
    ));
    let api_keys = Arc::new(ApiKeyCommands::new(
        event_store::framework(pool.clone(), &wakeup, ()),
        event_store::store(pool.clone(), &wakeup),
        Arc::new(PgLogPositions(pool.clone())),
        clock.clone(),
    ));
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut cluster_sim = None;
    if roles.saga {
        let (cluster, sim) = gpu_cluster(&config).await?;
        cluster_sim = sim;
        let saga = Arc::new(TrainingSaga::new(
            jobs.clone(),
            models.clone(),
            cluster,
            objects.clone(),
            config.rates.clone(),
            SagaOptions {
                poll_interval: config.saga_poll_interval,
                unavailable_backoff: config.saga_poll_interval.max(Duration::from_millis(500)),
                webhook_url: config
                    .cluster_webhook_secret
                    .as_ref()
                    .and(config.cluster_webhook_url.clone()),
                ..SagaOptions::default()
            },
        ));
        subscribers.push(Arc::new(SagaFeeder::new(
            config.saga_retry_backoff,
            config.subscription_park_after,
        )));
        tasks.push(tokio::spawn(infrastructure::saga::run_reconciler(
            pool.clone(),
            saga.clone(),
            config.saga_reconcile_interval,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(infrastructure::saga::run_driver(
            pool.clone(),
            saga,
            DriverOptions {
                tick: config.saga_poll_interval.min(Duration::from_millis(250)),
                lease: config.saga_lease,
                concurrency: config.saga_concurrency,
                error_backoff: config.saga_poll_interval.max(Duration::from_millis(500)),
            },
            shutdown.clone(),
        )));
    }
    if roles.workers {
        let tokenizer = Arc::new(O200k::load()?);
        let validation = DatasetValidation::new(
            datasets.clone(),
            objects.clone(),
            tokenizer,
            ValidatorOptions {
                workers: std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
                ..ValidatorOptions::default()
            },
        );
        subscribers.push(Arc::new(ValidationWorker::new(
            Arc::new(validation),
            pool.clone(),
            config.validation_concurrency,
            config.subscription_park_after,
        )));
        subscribers.push(Arc::new(BudgetWatcher::new(
            event_store::framework(pool.clone(), &wakeup, ()),
            clock.clone(),
            config.subscription_park_after,
        )));
        tasks.push(tokio::spawn(
            infrastructure::models::run_deployment_watcher(
                pool.clone(),
                models.clone(),
                Duration::from_secs(1),
                shutdown.clone(),
            ),
        ));
        // Slurm's run folders hold copies of datasets; the HTTP contract has no call to drop them.
        let copies = config
            .slurm
            .as_ref()
            .map(|s| Arc::new(SlurmCluster::new(s.clone())) as Arc<dyn GpuCluster>);
        tasks.push(tokio::spawn(dataset_workers::run_purger(
            pool.clone(),
            datasets.clone(),
            objects.clone(),
            copies,
            PurgeOptions {
                purge_after: config.purge_after,
                interval: config.purge_interval,
            },
            shutdown.clone(),
        )));
    }
    if roles.api {
        tasks.push(tokio::spawn(forget_rate_limit_windows(
            pool.clone(),
            Duration::from_secs(config.rate_limits.window_secs.max(1)),
            shutdown.clone(),
        )));
    }
    tasks.extend(subscribers.into_iter().map(|s| {
        subscription::spawn(
            pool.clone(),
            s,
            runner.clone(),
            leadership.clone(),
            shutdown.clone(),
        )
    }));
    let feeds = crate::live::JobFeeds::new(nats.clone(), &config.nats_subject_prefix);
    let console_policy = crate::security_headers::policy_for_console(
        object_store_origin(&*objects, application::Clock::now(&*clock))
            .await
            .as_deref(),
    );
    let state = AppState {
        console_policy,
        streams: crate::routes::job_stream::OpenStreams::new(config.streams_per_user),
        tokens: TokenKeys::new(&config.jwt_secret, config.jwt_ttl),
        users: Users(pool.clone()),
        config: Arc::new(config),
        pool,
        nats,
        clock,
        datasets,
        jobs,
        models,
        api_keys,
        feeds,
        leadership,
        objects,
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| anyhow::anyhow!("the HTTP client: {e}"))?,
    };
    Ok(Service {
        state,
        embedded_s3,
        cluster_sim,
        shutdown,
        tasks,
    })
}

/// The origin the store's presigned URLs point to (where a browser uploads): presigned once
/// for a key nobody writes, as the store itself would answer.
/// The inference engines deployments run on: llama.cpp when its environment is configured
/// (child processes of this one, or Slurm jobs), else none (deployments are refused,
/// saying so).
fn deployer(config: &Config, objects: Arc<dyn ObjectStore>) -> Arc<dyn Deployer> {
    let Some(venv) = &config.inference_venv else {
        return Arc::new(NoEngine);
    };
    let settings = EngineSettings {
        engine_venv: venv.clone(),
        trainer_python: config.trainer_python.clone(),
        trainer_src: config.trainer_src.clone(),
        models_dir: config.trainer_models_dir.clone(),
        ready_within: config.inference_ready_within,
    };
    let (host, root) = match &config.inference_slurm {
        Some(slurm) => {
            let serving = SlurmServing::new(slurm);
            let root = serving.root().to_path_buf();
            (EngineHost::Slurm(serving), root)
        }
        None => (EngineHost::Local, config.data_dir.join("deployments")),
    };
    Arc::new(
        LocalDeployer::new(
            LlamaCppEngines::new(settings, host),
            objects,
            root,
            format!("{}/v1", config.public_url),
        )
        .scale_down_after(config.inference_scale_down_after),
    )
}

async fn object_store_origin(
    objects: &dyn ObjectStore,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let probe = objects
        .presign_put("console-policy/probe", 1, Duration::from_secs(60), now)
        .await
        .ok()?;
    let url = reqwest::Url::parse(&probe.url).ok()?;
    Some(url.origin().ascii_serialization())
}

/// The configured S3 endpoint, or the embedded server over `<data dir>/objects`.
async fn object_store(
    config: &Config,
) -> anyhow::Result<(Arc<dyn ObjectStore>, Option<EmbeddedS3>)> {
    let configured = (
        config.aws_access_key_id.as_deref(),
        config.aws_secret_access_key.as_deref(),
    );
    let (access_key, secret_key) = match (&config.s3_endpoint, configured) {
        (Some(_), (Some(access), Some(secret))) => (access.to_string(), secret.to_string()),
        // The configuration refuses an endpoint without its keys.
        (Some(_), _) => {
            anyhow::bail!("S3_ENDPOINT requires AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        }
        (None, configured) => {
            infrastructure::s3::embedded_credentials(&config.data_dir, configured)?
        }
    };
    let (endpoint, embedded) = match &config.s3_endpoint {
        Some(endpoint) => (endpoint.clone(), None),
        None => {
            let server = EmbeddedS3::start(
                config.data_dir.join("objects"),
                config.s3_embedded_addr,
                &access_key,
                &secret_key,
                config.http_header_read_timeout,
                &config.console_origins,
            )
            .await?;
            (server.endpoint.clone(), Some(server))
        }
    };
    let store = S3Store::new(&S3Settings {
        endpoint,
        region: config.aws_region.clone(),
        access_key,
        secret_key,
        bucket: config.s3_bucket.clone(),
        sign_payloads: config.s3_sign_payloads,
    });
    store.ensure_bucket().await?;
    Ok((Arc::new(store), embedded))
}

/// The configured GPU cluster, or the simulator in-process over `<data dir>/cluster-sim`.
async fn gpu_cluster(config: &Config) -> anyhow::Result<(Arc<dyn GpuCluster>, Option<ClusterSim>)> {
    let options = ClientOptions::default();
    if let Some(slurm) = &config.slurm {
        std::fs::create_dir_all(&slurm.runs_dir)?;
        tracing::info!(settings = ?slurm, "GPU cluster: Slurm");
        return Ok((Arc::new(SlurmCluster::new(slurm.clone())), None));
    }
    if let Some(url) = &config.cluster_url {
        let client = HttpCluster::new(url, config.cluster_api_key.clone(), options);
        return Ok((Arc::new(client), None));
    }
    let key = config
        .cluster_api_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let sim = ClusterSim::start(
        SimSettings {
            data_dir: config.data_dir.join("cluster-sim"),
            speed: config.cluster_sim_speed,
            api_key: Some(key.clone()),
            seed: config.cluster_sim_seed,
            rates: config.rates.clone(),
            webhook_secret: config.cluster_webhook_secret.clone(),
        },
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        Arc::new(O200k::load()?),
    )
    .await?;
    let client = HttpCluster::new(&sim.url, Some(key), options);
    Ok((Arc::new(client), Some(sim)))
}

/// Drops the rate-limit counters of past windows, once a window (any instance may: the
/// delete is the same wherever it runs).
async fn forget_rate_limit_windows(
    pool: sqlx::PgPool,
    window: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(window) => {}
        }
        let before = chrono::Utc::now() - window * 2;
        if let Err(err) = infrastructure::rate_limits::forget_before(&pool, before).await {
            tracing::warn!(error = %err, "cannot drop past rate-limit windows");
        }
    }
}

/// `brightrun serve`: runs the roles until SIGINT/SIGTERM.
pub async fn serve(config: Config, roles: Roles) -> anyhow::Result<()> {
    tracing::info!(config = ?config, ?roles, "starting");
    let addr = config.addr;
    let service = start(config, roles, RunnerOptions::default()).await?;
    if roles.api {
        let listener = crate::http_server::listen(addr)?;
        tracing::info!(%addr, "listening");
        service.serve_http(listener, shutdown_signal()).await?;
    } else {
        shutdown_signal().await;
    }
    tracing::info!("shutting down");
    service.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
