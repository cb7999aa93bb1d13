//! Configuration: one typed struct, read once from the environment at start-up (12-factor).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use domain::dataset::{DEFAULT_PURGE_AFTER, DEFAULT_UPLOAD_LIMIT_BYTES};
use domain::rate_limit::RateLimit;

/// The embedded object store's credentials of old, published in the repository: refused
/// wherever they are configured. (A store without configured keys gets random ones of its
/// own, kept in its data folder: `s3::embedded_credentials`.)
pub const PUBLISHED_S3_SECRET_KEY: &str = "brightrun-local-secret";

/// The JWT secret used when none is configured. Refused in production.
pub const DEVELOPMENT_JWT_SECRET: &str = "brightrun-development-secret-do-not-use-in-production";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub database_max_connections: u32,
    pub nats_url: String,
    pub nats_stream: String,
    pub nats_subject_prefix: String,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub environment: Environment,
    pub jwt_secret: String,
    pub jwt_ttl: Duration,
    pub s3_endpoint: Option<String>,
    /// Where the embedded S3-protocol server listens when `s3_endpoint` is unset.
    pub s3_embedded_addr: SocketAddr,
    pub s3_bucket: String,
    /// Sign every uploaded byte (SigV4 payload hashes, multipart) even over a transport that
    /// keeps bodies intact (TLS, loopback); by default those get one unsigned streamed PUT.
    pub s3_sign_payloads: bool,
    /// Both or neither (`storage_keys`); neither: the embedded store's keys of its own.
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    /// Where the console is served from, as browsers see it: the only origins the embedded
    /// object store answers cross-origin requests (the console's uploads) for.
    pub console_origins: Vec<String>,
    /// Where callers reach this service (`PUBLIC_URL`): deployments' endpoint URLs name it.
    pub public_url: String,
    pub aws_region: String,
    pub cluster_url: Option<String>,
    pub cluster_api_key: Option<String>,
    /// `CLUSTER_BACKEND=slurm`: the cluster port on Slurm (its settings); otherwise the
    /// HTTP cluster of `cluster_url`, or the in-process simulator.
    pub slurm: Option<crate::slurm::SlurmSettings>,
    pub upload_limit_bytes: u64,
    pub max_body_bytes: usize,
    /// The API's and the embedded object store's connections: a request head must arrive
    /// within it, and an idle connection is closed after it (`infrastructure::http_connections`).
    pub http_header_read_timeout: Duration,
    /// Failed logins for one e-mail from one client address within the window.
    pub login_max_failures: i64,
    /// Failed logins from one client address (any e-mail) within the window.
    pub login_max_failures_per_address: i64,
    pub login_window: Duration,
    pub rate_limits: RateLimits,
    /// Event streams one user may hold open on one instance (0: no cap).
    pub streams_per_user: usize,
    /// How often an open event stream checks its credential again (a revoked key, a deleted
    /// account or an expired token ends it).
    pub stream_recheck: Duration,
    /// Take the client's address from the right-most `X-Forwarded-For` entry (the one a
    /// trusted proxy appended); otherwise the connection's peer address.
    pub trust_forwarded_for: bool,
    pub purge_after: Duration,
    pub purge_interval: Duration,
    pub validation_concurrency: usize,
    /// Failed attempts at one event (its own failure, not a dependency's) before a
    /// subscription parks it and goes on.
    pub subscription_park_after: u32,
    /// Cluster seconds per real second in the simulator.
    pub cluster_sim_speed: f64,
    pub cluster_sim_seed: u64,
    pub saga_poll_interval: Duration,
    pub saga_retry_backoff: Duration,
    pub saga_lease: Duration,
    pub saga_concurrency: usize,
    /// Our webhook endpoint as the cluster reaches it (`.../api/cluster/webhook`); none: the
    /// saga only polls.
    pub cluster_webhook_url: Option<String>,
    /// The secret cluster webhooks are signed with (generated for the in-process simulator).
    pub cluster_webhook_secret: Option<String>,
    /// How often failed jobs are checked against the cluster (reconciliation).
    pub saga_reconcile_interval: Duration,
    /// The CPU inference engine's environment (`INFERENCE_VENV`); without it deployments
    /// are refused.
    pub inference_venv: Option<PathBuf>,
    /// The Python that converts adapters for the engine (`TRAINER_PYTHON`).
    pub trainer_python: PathBuf,
    /// The trainer's `src` folder (`TRAINER_SRC`), for the converter.
    pub trainer_src: Option<PathBuf>,
    pub trainer_models_dir: Option<PathBuf>,
    /// How long an engine may take to answer after it starts.
    pub inference_ready_within: Duration,
    /// How long a lower load lasts before a replica over `minReplicas` stops.
    pub inference_scale_down_after: Duration,
    /// `INFERENCE_HOST=slurm`: deployments' engines run as Slurm jobs (these settings);
    /// otherwise as child processes of this one.
    pub inference_slurm: Option<crate::slurm::SlurmSettings>,
    /// The price list every estimate, ledger entry and bill uses (read once, here).
    pub rates: domain::job::estimate::Rates,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: {message}")]
    Invalid { name: &'static str, message: String },
    #[error("BRIGHTRUN_ENV=production requires JWT_SECRET (at least 32 characters, not the development default)")]
    DevelopmentSecretInProduction,
    #[error("BRIGHTRUN_ADDR={addr} is reachable from other machines: set JWT_SECRET (at least 32 characters, not the development default), or listen on 127.0.0.1")]
    DevelopmentSecretOffLoopback { addr: SocketAddr },
    #[error("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: {0}")]
    StorageKeys(&'static str),
}

/// Every variable, its default and what it does: printed by `brightrun --help`.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/brightrun",
        "Postgres; the database is created and migrated on start",
    ),
    (
        "DATABASE_MAX_CONNECTIONS",
        "32",
        "connection pool size (each subscription holds two)",
    ),
    (
        "NATS_URL",
        "nats://127.0.0.1:4222",
        "NATS server with JetStream",
    ),
    (
        "NATS_STREAM",
        "BRIGHTRUN_EVENTS",
        "JetStream stream the relay publishes to",
    ),
    (
        "NATS_SUBJECT_PREFIX",
        "brightrun",
        "subjects are <prefix>.<aggregate>.<id>.<eventType>",
    ),
    ("BRIGHTRUN_ADDR", "127.0.0.1:8080", "HTTP listen address"),
    (
        "BRIGHTRUN_DATA_DIR",
        "./data",
        "local data (embedded object store)",
    ),
    (
        "BRIGHTRUN_ENV",
        "development",
        "development | production (production refuses the development JWT secret)",
    ),
    (
        "JWT_SECRET",
        "(development default)",
        "HS256 signing secret",
    ),
    ("JWT_TTL_SECONDS", "86400", "token lifetime"),
    ("S3_ENDPOINT", "(unset: embedded)", "S3-protocol endpoint"),
    (
        "S3_BUCKET",
        "brightrun",
        "bucket for datasets and artifacts",
    ),
    (
        "AWS_ACCESS_KEY_ID",
        "(unset: the embedded store's own)",
        "S3 credentials; required with S3_ENDPOINT and in production (the embedded store's, unset in development: random, kept in <data dir>/object-store-credentials)",
    ),
    (
        "AWS_SECRET_ACCESS_KEY",
        "(unset)",
        "S3 credentials (with AWS_ACCESS_KEY_ID)",
    ),
    (
        "CONSOLE_ORIGINS",
        "http://<BRIGHTRUN_ADDR> (and http://localhost:<port> on 127.0.0.1)",
        "comma-separated origins the console is reached at (behind a proxy: its https origin); the embedded object store allows cross-origin uploads from these only",
    ),
    (
        "PUBLIC_URL",
        "http://<BRIGHTRUN_ADDR>",
        "where callers reach this service (behind a proxy: its https URL); a deployment's endpointUrl is <PUBLIC_URL>/v1",
    ),
    ("AWS_REGION", "us-east-1", "S3 region"),
    (
        "CLUSTER_URL",
        "(unset: in-process simulator)",
        "GPU cluster API",
    ),
    ("CLUSTER_API_KEY", "(unset)", "GPU cluster API key"),
    (
        "CLUSTER_BACKEND",
        "(simulator, or http when CLUSTER_URL is set)",
        "simulator | http | slurm (Slurm through slurmrestd; scripts/slurm-local.sh sets up one)",
    ),
    ("SLURM_REST_URL", "(required for slurm)", "slurmrestd, e.g. http://127.0.0.1:6820"),
    ("SLURM_API_VERSION", "v0.0.38", "slurmrestd's OpenAPI plugin (Slurm 22.05)"),
    ("SLURM_USER", "(required for slurm)", "the user jobs are submitted as (JWT auth)"),
    ("SLURM_JWT", "(required for slurm)", "that user's token (`scontrol token`)"),
    ("SLURM_PARTITION", "(Slurm's default)", "partition training jobs go to"),
    (
        "SLURM_GPU_GRES",
        "(untyped gpu:<n>)",
        "GPU types to gres names: a100-40gb=gpu:a100_40gb,a100-80gb=...,h100-80gb=...",
    ),
    (
        "SLURM_RUNS_DIR",
        "<data dir>/slurm-runs",
        "run folders, on a filesystem serve and the nodes share",
    ),
    ("SLURM_CPUS_PER_TASK", "2", "CPUs each training job asks for"),
    ("TRAINER_PYTHON", "python3", "the Python that runs the trainer (scripts/trainer-env.sh)"),
    ("TRAINER_SRC", "(installed)", "the trainer's src folder, put on the job's PYTHONPATH"),
    ("TRAINER_MODELS_DIR", "(trainer default)", "base models, Hugging Face cache layout"),
    ("RATE_A100_40GB_GPU_HOUR", "2.50", "USD per GPU-hour"),
    ("RATE_A100_80GB_GPU_HOUR", "3.20", "USD per GPU-hour"),
    ("RATE_H100_80GB_GPU_HOUR", "4.50", "USD per GPU-hour"),
    ("RATE_STORAGE_GB_MONTH", "0.023", "USD per GB-month of stored artifacts"),
    ("RATE_TRANSFER_GB", "0.09", "USD per GB of data transfer"),
    (
        "UPLOAD_LIMIT_BYTES",
        "10737418240",
        "largest dataset file accepted",
    ),
    ("MAX_BODY_BYTES", "1048576", "largest JSON request body"),
    (
        "HTTP_HEADER_READ_TIMEOUT_SECONDS",
        "30",
        "a connection (API, embedded object store) must send a whole request head within it; an idle one is closed after it",
    ),
    (
        "LOGIN_MAX_FAILURES",
        "5",
        "failed logins for one e-mail from one client address before RATE_LIMITED (a stranger elsewhere locks only itself out)",
    ),
    (
        "LOGIN_MAX_FAILURES_PER_ADDRESS",
        "20",
        "failed logins from one client address (any e-mail, attempts in flight included) before RATE_LIMITED",
    ),
    (
        "RATE_LIMIT_WINDOW_SECONDS",
        "60",
        "the fixed window the request limits count in (shared by every instance, in Postgres)",
    ),
    (
        "RATE_LIMIT_WRITES_PER_CALLER",
        "600",
        "writes (POST, PATCH, DELETE) per user token or API key per window; 0: no limit",
    ),
    (
        "RATE_LIMIT_WRITES_PER_ADDRESS",
        "3000",
        "writes per client address per window; 0: no limit",
    ),
    (
        "RATE_LIMIT_EXPENSIVE_PER_CALLER",
        "120",
        "estimates, previews, uploads, file downloads, audits and SSE connections per caller per window",
    ),
    (
        "RATE_LIMIT_EXPENSIVE_PER_ADDRESS",
        "600",
        "the same, per client address per window",
    ),
    (
        "SSE_STREAMS_PER_USER",
        "100",
        "job event streams one user may hold open on one instance; one more answers RATE_LIMITED; 0: no cap",
    ),
    (
        "SSE_RECHECK_SECONDS",
        "15",
        "how often an open event stream checks its token or API key again: a revoked key, a deleted account or an expired token ends it",
    ),
    (
        "RATE_LIMIT_LOGINS_PER_EMAIL",
        "10",
        "logins for one e-mail from one client address per window, whatever their outcome (each costs a password hash)",
    ),
    (
        "RATE_LIMIT_LOGINS_PER_ADDRESS",
        "60",
        "the same, per client address per window",
    ),
    (
        "TRUST_FORWARDED_FOR",
        "false",
        "true behind one proxy that appends to X-Forwarded-For: limits count its last (right-most) address, the one the proxy saw",
    ),
    (
        "LOGIN_WINDOW_SECONDS",
        "900",
        "window over which failed logins are counted",
    ),
    (
        "DATASET_PURGE_AFTER_SECONDS",
        "2592000",
        "objects of deleted datasets are removed this long after deletion (30 days)",
    ),
    (
        "CLUSTER_WEBHOOK_URL",
        "",
        "our webhook endpoint as the cluster reaches it (http://host:port/api/cluster/webhook); unset: poll only",
    ),
    (
        "CLUSTER_WEBHOOK_SECRET",
        "",
        "HMAC-SHA256 secret of the cluster's webhooks (generated for the in-process simulator)",
    ),
    (
        "SAGA_RECONCILE_INTERVAL_MS",
        "60000",
        "how often jobs failed on our side are checked against the cluster",
    ),
    (
        "INFERENCE_VENV",
        "(unset: deployments are refused)",
        "the CPU inference engine's environment (scripts/inference-env.sh prints it); its engines run under <data dir>/deployments",
    ),
    (
        "INFERENCE_SCALE_DOWN_SECONDS",
        "60",
        "how long a deployment's load must ask for fewer replicas before one over minReplicas stops",
    ),
    (
        "INFERENCE_HOST",
        "local",
        "local (engines are child processes of serve) | slurm (each engine a Slurm job, through the SLURM_* settings; deployments under <SLURM_RUNS_DIR>/deployments)",
    ),
    (
        "INFERENCE_READY_SECONDS",
        "120",
        "how long a starting engine may take to answer before its deployment fails",
    ),
    ("RATE_API_1K_TOKENS", "0.002", "USD per 1,000 tokens of chat completions on a deployed model"),
    (
        "DATASET_PURGE_INTERVAL_SECONDS",
        "60",
        "how often the purger looks for due objects",
    ),
    (
        "CLUSTER_SIM_SPEED",
        "60",
        "simulator time compression: cluster seconds per real second",
    ),
    (
        "CLUSTER_SIM_SEED",
        "0",
        "simulator seed (runs are deterministic for a seed)",
    ),
    (
        "SAGA_POLL_INTERVAL_MS",
        "2000",
        "how often a running job's cluster status is read",
    ),
    (
        "SAGA_RETRY_BACKOFF_MS",
        "5000",
        "wait before the first resubmission of a failed job (doubles per retry)",
    ),
    (
        "SAGA_LEASE_SECONDS",
        "60",
        "how long a saga driver holds a job before another instance may take it",
    ),
    ("SAGA_CONCURRENCY", "16", "jobs stepped at once per process"),
    (
        "VALIDATION_CONCURRENCY",
        "2",
        "dataset files validated at once per process",
    ),
    (
        "SUBSCRIPTION_PARK_AFTER",
        "5",
        "failed attempts at one event (not a dependency being down) before a subscription parks it and goes on (brightrun parked list|retry)",
    ),
];

/// Requests per window, per caller (a user's token or an API key) and per client address,
/// for each class of `domain::rate_limit` (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub window_secs: u64,
    pub writes_per_caller: u32,
    pub writes_per_address: u32,
    pub expensive_per_caller: u32,
    pub expensive_per_address: u32,
    /// Logins (any outcome: each costs a password hash) per e-mail from one client address,
    /// and per client address.
    pub logins_per_email: u32,
    pub logins_per_address: u32,
}

impl RateLimits {
    /// The limits of `class`: (per caller, per address).
    pub fn of(&self, class: domain::rate_limit::RateClass) -> (RateLimit, RateLimit) {
        use domain::rate_limit::RateClass::*;
        let (caller, address) = match class {
            Write => (self.writes_per_caller, self.writes_per_address),
            Expensive => (self.expensive_per_caller, self.expensive_per_address),
        };
        (self.rule(caller), self.rule(address))
    }

    /// The limits on logins: (per e-mail from one address, per address).
    pub fn logins(&self) -> (RateLimit, RateLimit) {
        (
            self.rule(self.logins_per_email),
            self.rule(self.logins_per_address),
        )
    }

    fn rule(&self, limit: u32) -> RateLimit {
        RateLimit {
            limit,
            window_secs: self.window_secs,
        }
    }
}

/// The object store's keys: both or neither; in production, and with an external
/// `S3_ENDPOINT`, both (no store of ours answers to keys we made up), never the ones once
/// published.
fn storage_keys(
    lookup: &impl Fn(&str) -> Option<String>,
    environment: Environment,
) -> Result<(Option<String>, Option<String>), ConfigError> {
    let keys = (lookup("AWS_ACCESS_KEY_ID"), lookup("AWS_SECRET_ACCESS_KEY"));
    match &keys {
        (Some(_), Some(secret)) if secret == PUBLISHED_S3_SECRET_KEY => Err(ConfigError::StorageKeys(
            "the secret is the development default once published in the repository: choose one of your own",
        )),
        (Some(_), Some(_)) => Ok(keys),
        (Some(_), None) | (None, Some(_)) => Err(ConfigError::StorageKeys("set both, or neither")),
        (None, None) if environment == Environment::Production => Err(ConfigError::StorageKeys(
            "BRIGHTRUN_ENV=production requires the object store's keys",
        )),
        (None, None) if lookup("S3_ENDPOINT").is_some() => Err(ConfigError::StorageKeys(
            "S3_ENDPOINT requires the keys of that store",
        )),
        (None, None) => Ok(keys),
    }
}

/// The console's origins by default: the address it is served on (and `localhost` for the
/// loopback address, as a browser on this machine may name it).
fn origins_of(addr: SocketAddr) -> Vec<String> {
    let mut origins = vec![format!("http://{addr}")];
    if addr.ip() == std::net::IpAddr::from([127, 0, 0, 1]) {
        origins.push(format!("http://localhost:{}", addr.port()));
    }
    origins
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads configuration through `lookup`, so tests can supply their own variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let text =
            |name: &'static str, default: &str| lookup(name).unwrap_or_else(|| default.to_string());
        let environment = match text("BRIGHTRUN_ENV", "development").as_str() {
            "development" => Environment::Development,
            "production" => Environment::Production,
            other => {
                return Err(ConfigError::Invalid {
                    name: "BRIGHTRUN_ENV",
                    message: format!("'{other}' is neither development nor production"),
                })
            }
        };
        let jwt_secret = match (lookup("JWT_SECRET"), environment) {
            (Some(s), Environment::Production) if s.len() < 32 || s == DEVELOPMENT_JWT_SECRET => {
                return Err(ConfigError::DevelopmentSecretInProduction)
            }
            (Some(s), _) => s,
            (None, Environment::Production) => {
                return Err(ConfigError::DevelopmentSecretInProduction)
            }
            (None, Environment::Development) => DEVELOPMENT_JWT_SECRET.to_string(),
        };
        let addr = parse(
            &lookup,
            "BRIGHTRUN_ADDR",
            SocketAddr::from(([127, 0, 0, 1], 8080)),
        )?;
        // The development secret is published: whoever can reach the server can mint its
        // tokens. Off this machine it needs a secret of its own, whatever the environment.
        if jwt_secret == DEVELOPMENT_JWT_SECRET && !addr.ip().is_loopback() {
            return Err(ConfigError::DevelopmentSecretOffLoopback { addr });
        }
        let (aws_access_key_id, aws_secret_access_key) = storage_keys(&lookup, environment)?;
        let console_origins = match lookup("CONSOLE_ORIGINS") {
            Some(list) => list
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            None => origins_of(addr),
        };
        let public_url = lookup("PUBLIC_URL")
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("http://{addr}"));
        let data_dir = PathBuf::from(text("BRIGHTRUN_DATA_DIR", "./data"));
        let rates = rates(&lookup)?;
        let slurm = match lookup("CLUSTER_BACKEND").as_deref() {
            None | Some("simulator") | Some("http") => None,
            Some("slurm") => Some(slurm_settings(&lookup, &data_dir, &rates)?),
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "CLUSTER_BACKEND",
                    message: format!("'{other}' is not simulator, http or slurm"),
                })
            }
        };
        let inference_slurm = match lookup("INFERENCE_HOST").as_deref() {
            None | Some("local") => None,
            Some("slurm") => Some(match &slurm {
                Some(settings) => settings.clone(),
                None => slurm_settings(&lookup, &data_dir, &rates)?,
            }),
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "INFERENCE_HOST",
                    message: format!("'{other}' is not local or slurm"),
                })
            }
        };
        Ok(Config {
            slurm,
            inference_slurm,
            rates,
            database_url: text(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/brightrun",
            ),
            database_max_connections: parse(&lookup, "DATABASE_MAX_CONNECTIONS", 32)?,
            nats_url: text("NATS_URL", "nats://127.0.0.1:4222"),
            nats_stream: text("NATS_STREAM", "BRIGHTRUN_EVENTS"),
            nats_subject_prefix: text("NATS_SUBJECT_PREFIX", "brightrun"),
            addr,
            data_dir,
            environment,
            jwt_secret,
            jwt_ttl: Duration::from_secs(parse(&lookup, "JWT_TTL_SECONDS", 86_400)?),
            s3_endpoint: lookup("S3_ENDPOINT"),
            s3_embedded_addr: parse(
                &lookup,
                "S3_EMBEDDED_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 0)),
            )?,
            s3_bucket: text("S3_BUCKET", "brightrun"),
            s3_sign_payloads: parse(&lookup, "S3_SIGN_PAYLOADS", false)?,
            aws_access_key_id,
            aws_secret_access_key,
            console_origins,
            public_url,
            aws_region: text("AWS_REGION", "us-east-1"),
            cluster_url: lookup("CLUSTER_URL"),
            cluster_api_key: lookup("CLUSTER_API_KEY"),
            upload_limit_bytes: parse(&lookup, "UPLOAD_LIMIT_BYTES", DEFAULT_UPLOAD_LIMIT_BYTES)?,
            max_body_bytes: parse(&lookup, "MAX_BODY_BYTES", 1024 * 1024)?,
            http_header_read_timeout: match parse(&lookup, "HTTP_HEADER_READ_TIMEOUT_SECONDS", 30)?
            {
                0 => {
                    return Err(ConfigError::Invalid {
                        name: "HTTP_HEADER_READ_TIMEOUT_SECONDS",
                        message: "must be at least 1".into(),
                    })
                }
                seconds => Duration::from_secs(seconds),
            },
            login_max_failures: parse(&lookup, "LOGIN_MAX_FAILURES", 5)?,
            login_max_failures_per_address: parse(&lookup, "LOGIN_MAX_FAILURES_PER_ADDRESS", 20)?,
            rate_limits: RateLimits {
                window_secs: parse(&lookup, "RATE_LIMIT_WINDOW_SECONDS", 60)?,
                writes_per_caller: parse(&lookup, "RATE_LIMIT_WRITES_PER_CALLER", 600)?,
                writes_per_address: parse(&lookup, "RATE_LIMIT_WRITES_PER_ADDRESS", 3000)?,
                expensive_per_caller: parse(&lookup, "RATE_LIMIT_EXPENSIVE_PER_CALLER", 120)?,
                expensive_per_address: parse(&lookup, "RATE_LIMIT_EXPENSIVE_PER_ADDRESS", 600)?,
                logins_per_email: parse(&lookup, "RATE_LIMIT_LOGINS_PER_EMAIL", 10)?,
                logins_per_address: parse(&lookup, "RATE_LIMIT_LOGINS_PER_ADDRESS", 60)?,
            },
            streams_per_user: parse(&lookup, "SSE_STREAMS_PER_USER", 100)?,
            stream_recheck: match parse(&lookup, "SSE_RECHECK_SECONDS", 15)? {
                0 => {
                    return Err(ConfigError::Invalid {
                        name: "SSE_RECHECK_SECONDS",
                        message: "must be at least 1".into(),
                    })
                }
                secs => Duration::from_secs(secs),
            },
            trust_forwarded_for: parse(&lookup, "TRUST_FORWARDED_FOR", false)?,
            login_window: Duration::from_secs(parse(&lookup, "LOGIN_WINDOW_SECONDS", 900)?),
            purge_after: Duration::from_secs(parse(
                &lookup,
                "DATASET_PURGE_AFTER_SECONDS",
                DEFAULT_PURGE_AFTER.as_secs(),
            )?),
            purge_interval: Duration::from_secs(parse(
                &lookup,
                "DATASET_PURGE_INTERVAL_SECONDS",
                60,
            )?),
            validation_concurrency: parse(&lookup, "VALIDATION_CONCURRENCY", 2)?,
            subscription_park_after: parse(
                &lookup,
                "SUBSCRIPTION_PARK_AFTER",
                crate::parking::DEFAULT_PARK_AFTER,
            )?,
            cluster_webhook_url: lookup("CLUSTER_WEBHOOK_URL"),
            cluster_webhook_secret: lookup("CLUSTER_WEBHOOK_SECRET"),
            saga_reconcile_interval: Duration::from_millis(parse(
                &lookup,
                "SAGA_RECONCILE_INTERVAL_MS",
                60_000,
            )?),
            inference_venv: lookup("INFERENCE_VENV").map(PathBuf::from),
            trainer_python: PathBuf::from(
                lookup("TRAINER_PYTHON").unwrap_or_else(|| "python3".into()),
            ),
            trainer_src: lookup("TRAINER_SRC").map(PathBuf::from),
            trainer_models_dir: lookup("TRAINER_MODELS_DIR").map(PathBuf::from),
            inference_ready_within: Duration::from_secs(parse(
                &lookup,
                "INFERENCE_READY_SECONDS",
                120,
            )?),
            inference_scale_down_after: Duration::from_secs(parse(
                &lookup,
                "INFERENCE_SCALE_DOWN_SECONDS",
                60,
            )?),
            cluster_sim_speed: parse(&lookup, "CLUSTER_SIM_SPEED", 60.0)?,
            cluster_sim_seed: parse(&lookup, "CLUSTER_SIM_SEED", 0)?,
            saga_poll_interval: Duration::from_millis(parse(
                &lookup,
                "SAGA_POLL_INTERVAL_MS",
                2000,
            )?),
            saga_retry_backoff: Duration::from_millis(parse(
                &lookup,
                "SAGA_RETRY_BACKOFF_MS",
                5000,
            )?),
            saga_lease: Duration::from_secs(parse(&lookup, "SAGA_LEASE_SECONDS", 60)?),
            saga_concurrency: parse(&lookup, "SAGA_CONCURRENCY", 16)?,
        })
    }
}

/// The price list: the README's default rates, each overridable (USD, decimal).
fn rates(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<domain::job::estimate::Rates, ConfigError> {
    let defaults = domain::job::estimate::Rates::default();
    let rate = |name: &'static str, default: rust_decimal::Decimal| {
        let value: rust_decimal::Decimal = parse(lookup, name, default)?;
        if value.is_sign_negative() {
            return Err(ConfigError::Invalid {
                name,
                message: format!("'{value}': a rate cannot be negative"),
            });
        }
        Ok(value)
    };
    Ok(domain::job::estimate::Rates {
        a100_40gb_per_gpu_hour: rate("RATE_A100_40GB_GPU_HOUR", defaults.a100_40gb_per_gpu_hour)?,
        a100_80gb_per_gpu_hour: rate("RATE_A100_80GB_GPU_HOUR", defaults.a100_80gb_per_gpu_hour)?,
        h100_80gb_per_gpu_hour: rate("RATE_H100_80GB_GPU_HOUR", defaults.h100_80gb_per_gpu_hour)?,
        storage_per_gb_month: rate("RATE_STORAGE_GB_MONTH", defaults.storage_per_gb_month)?,
        data_transfer_per_gb: rate("RATE_TRANSFER_GB", defaults.data_transfer_per_gb)?,
        api_calls_per_1k_tokens: rate("RATE_API_1K_TOKENS", defaults.api_calls_per_1k_tokens)?,
    })
}

fn slurm_settings(
    lookup: &impl Fn(&str) -> Option<String>,
    data_dir: &std::path::Path,
    rates: &domain::job::estimate::Rates,
) -> Result<crate::slurm::SlurmSettings, ConfigError> {
    let required = |name: &'static str| {
        lookup(name).ok_or_else(|| ConfigError::Invalid {
            name,
            message: "required with CLUSTER_BACKEND=slurm or INFERENCE_HOST=slurm (scripts/slurm-local.sh start prints it)"
                .into(),
        })
    };
    let gres = match lookup("SLURM_GPU_GRES") {
        Some(text) => {
            crate::slurm::parse_gres_map(&text).map_err(|message| ConfigError::Invalid {
                name: "SLURM_GPU_GRES",
                message,
            })?
        }
        None => Default::default(),
    };
    Ok(crate::slurm::SlurmSettings {
        rest_url: required("SLURM_REST_URL")?,
        api_version: lookup("SLURM_API_VERSION").unwrap_or_else(|| "v0.0.38".into()),
        user: required("SLURM_USER")?,
        jwt: required("SLURM_JWT")?,
        partition: lookup("SLURM_PARTITION"),
        gres,
        runs_dir: lookup("SLURM_RUNS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("slurm-runs")),
        trainer_python: lookup("TRAINER_PYTHON").unwrap_or_else(|| "python3".into()),
        trainer_src: lookup("TRAINER_SRC").map(PathBuf::from),
        models_dir: lookup("TRAINER_MODELS_DIR").map(PathBuf::from),
        cpus_per_task: parse(lookup, "SLURM_CPUS_PER_TASK", 2)?,
        rates: rates.clone(),
    })
}

fn parse<T: std::str::FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match lookup(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            message: format!("'{v}': {e}"),
        }),
    }
}

fn mask_url(url: &str) -> String {
    // postgres://user:password@host → postgres://user:***@host
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***@{}", &url[..scheme], &url[at + 1..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The effective configuration with secrets masked, as logged at start.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| if s.is_some() { "***" } else { "(unset)" };
        f.debug_struct("Config")
            .field("database_url", &mask_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("nats_url", &mask_url(&self.nats_url))
            .field("nats_stream", &self.nats_stream)
            .field("nats_subject_prefix", &self.nats_subject_prefix)
            .field("addr", &self.addr)
            .field("data_dir", &self.data_dir)
            .field("environment", &self.environment)
            .field(
                "jwt_secret",
                &if self.jwt_secret == DEVELOPMENT_JWT_SECRET {
                    "(development default)"
                } else {
                    "***"
                },
            )
            .field("jwt_ttl", &self.jwt_ttl)
            .field(
                "s3_endpoint",
                &self.s3_endpoint.as_deref().unwrap_or("(embedded)"),
            )
            .field("s3_embedded_addr", &self.s3_embedded_addr)
            .field("s3_bucket", &self.s3_bucket)
            .field("aws_access_key_id", &secret(&self.aws_access_key_id))
            .field(
                "aws_secret_access_key",
                &secret(&self.aws_secret_access_key),
            )
            .field("aws_region", &self.aws_region)
            .field("console_origins", &self.console_origins)
            .field("streams_per_user", &self.streams_per_user)
            .field("stream_recheck", &self.stream_recheck)
            .field(
                "cluster_url",
                &self.cluster_url.as_deref().unwrap_or("(simulator)"),
            )
            .field("cluster_api_key", &secret(&self.cluster_api_key))
            .field("slurm", &self.slurm)
            .field("upload_limit_bytes", &self.upload_limit_bytes)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("login_max_failures", &self.login_max_failures)
            .field(
                "login_max_failures_per_address",
                &self.login_max_failures_per_address,
            )
            .field("rate_limits", &self.rate_limits)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("login_window", &self.login_window)
            .field("purge_after", &self.purge_after)
            .field("purge_interval", &self.purge_interval)
            .field("validation_concurrency", &self.validation_concurrency)
            .field("subscription_park_after", &self.subscription_park_after)
            .field("cluster_sim_speed", &self.cluster_sim_speed)
            .field("cluster_sim_seed", &self.cluster_sim_seed)
            .field("saga_poll_interval", &self.saga_poll_interval)
            .field("saga_retry_backoff", &self.saga_retry_backoff)
            .field("saga_lease", &self.saga_lease)
            .field("saga_concurrency", &self.saga_concurrency)
            .field("cluster_webhook_url", &self.cluster_webhook_url)
            .field(
                "cluster_webhook_secret",
                &secret(&self.cluster_webhook_secret),
            )
            .field("saga_reconcile_interval", &self.saga_reconcile_interval)
            .field("public_url", &self.public_url)
            .field("inference_venv", &self.inference_venv)
            .field("trainer_python", &self.trainer_python)
            .field("trainer_src", &self.trainer_src)
            .field("trainer_models_dir", &self.trainer_models_dir)
            .field("inference_ready_within", &self.inference_ready_within)
            .field(
                "inference_scale_down_after",
                &self.inference_scale_down_after,
            )
            .field("inference_slurm", &self.inference_slurm)
            .field("rates", &self.rates)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_serve_a_fresh_machine() {
        let c = with(&[]).unwrap();
        assert_eq!(
            c.database_url,
            "postgres://postgres@127.0.0.1:5432/brightrun"
        );
        assert_eq!(c.nats_stream, "BRIGHTRUN_EVENTS");
        assert_eq!(c.nats_subject_prefix, "brightrun");
        assert_eq!(c.jwt_secret, DEVELOPMENT_JWT_SECRET);
    }

    #[test]
    fn rates_default_to_the_price_list_and_can_be_set() {
        let c = with(&[]).unwrap();
        assert_eq!(c.rates, domain::job::estimate::Rates::default());
        let c = with(&[
            ("RATE_H100_80GB_GPU_HOUR", "3.99"),
            ("RATE_TRANSFER_GB", "0"),
            ("RATE_API_1K_TOKENS", "0.01"),
        ])
        .unwrap();
        assert_eq!(c.rates.h100_80gb_per_gpu_hour.to_string(), "3.99");
        assert!(c.rates.data_transfer_per_gb.is_zero());
        assert_eq!(c.rates.api_calls_per_1k_tokens.to_string(), "0.01");
        assert!(matches!(
            with(&[("RATE_STORAGE_GB_MONTH", "-1")]),
            Err(ConfigError::Invalid {
                name: "RATE_STORAGE_GB_MONTH",
                ..
            })
        ));
        assert!(with(&[("RATE_A100_40GB_GPU_HOUR", "cheap")]).is_err());
    }

    #[test]
    fn the_development_secret_is_refused_on_an_address_other_machines_reach() {
        for addr in ["0.0.0.0:8080", "[::]:8080", "192.0.2.10:8080"] {
            assert!(
                matches!(
                    with(&[("BRIGHTRUN_ADDR", addr)]),
                    Err(ConfigError::DevelopmentSecretOffLoopback { .. })
                ),
                "{addr}"
            );
            assert!(
                with(&[("BRIGHTRUN_ADDR", addr), ("JWT_SECRET", &"s".repeat(32))]).is_ok(),
                "{addr} with a secret of its own"
            );
        }
        for addr in ["127.0.0.1:8080", "[::1]:8080"] {
            assert!(with(&[("BRIGHTRUN_ADDR", addr)]).is_ok(), "{addr}");
        }
    }

    #[test]
    fn production_refuses_the_development_secret() {
        assert!(matches!(
            with(&[("BRIGHTRUN_ENV", "production")]),
            Err(ConfigError::DevelopmentSecretInProduction)
        ));
        let dev = with(&[
            ("BRIGHTRUN_ENV", "production"),
            ("JWT_SECRET", DEVELOPMENT_JWT_SECRET),
        ]);
        assert!(matches!(
            dev,
            Err(ConfigError::DevelopmentSecretInProduction)
        ));
        let ok = with(&[
            ("BRIGHTRUN_ENV", "production"),
            ("JWT_SECRET", &"s".repeat(32)),
            ("AWS_ACCESS_KEY_ID", "prod-access"),
            ("AWS_SECRET_ACCESS_KEY", "prod-secret-of-its-own"),
        ]);
        assert!(ok.is_ok());
    }

    #[test]
    fn the_object_store_s_keys_are_both_or_neither_and_never_the_published_ones() {
        let production = [
            ("BRIGHTRUN_ENV", "production"),
            ("JWT_SECRET", "s".repeat(32).leak() as &str),
        ];
        let refused = |extra: &[(&str, &str)]| {
            let mut vars = production.to_vec();
            vars.extend_from_slice(extra);
            matches!(with(&vars), Err(ConfigError::StorageKeys(_)))
        };
        assert!(refused(&[]), "production without keys");
        assert!(refused(&[
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", PUBLISHED_S3_SECRET_KEY)
        ]));
        assert!(refused(&[("AWS_ACCESS_KEY_ID", "a")]));
        // In development: neither is the embedded store's own keys; an external store needs its keys.
        assert!(with(&[]).is_ok());
        assert!(matches!(
            with(&[("S3_ENDPOINT", "http://127.0.0.1:9000")]),
            Err(ConfigError::StorageKeys(_))
        ));
        assert!(matches!(
            with(&[
                ("AWS_ACCESS_KEY_ID", "brightrun-local"),
                ("AWS_SECRET_ACCESS_KEY", PUBLISHED_S3_SECRET_KEY)
            ]),
            Err(ConfigError::StorageKeys(_))
        ));
    }

    #[test]
    fn the_console_s_origins_are_its_address_unless_configured() {
        let c = with(&[("BRIGHTRUN_ADDR", "127.0.0.1:8080")]).unwrap();
        assert_eq!(
            c.console_origins,
            ["http://127.0.0.1:8080", "http://localhost:8080"]
        );
        let c = with(&[(
            "CONSOLE_ORIGINS",
            "https://brightrun.example.com/, http://10.0.0.2:8080",
        )])
        .unwrap();
        assert_eq!(
            c.console_origins,
            ["https://brightrun.example.com", "http://10.0.0.2:8080"]
        );
    }

    #[test]
    fn a_bad_number_names_its_variable() {
        let err = with(&[("DATABASE_MAX_CONNECTIONS", "many")]).unwrap_err();
        assert!(
            err.to_string().starts_with("DATABASE_MAX_CONNECTIONS"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_masked_in_the_log() {
        let c = with(&[
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
            ("JWT_SECRET", "topsecretvalue"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("topsecretvalue"),
            "{shown}"
        );
        assert!(shown.contains("postgres://u:***@db/x"));
    }
}
