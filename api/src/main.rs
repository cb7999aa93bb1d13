use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use domain::identity::Role;
use infrastructure::users::Users;
use infrastructure::{config, db, Config};

/// jemalloc, not glibc's malloc: under load (`api/benches/load.rs`) glibc kept the memory of freed
/// multi-megabyte buffers (the artifact and checkpoint copies of finishing jobs) in its
/// per-thread arenas, so `serve`'s RSS stepped up as jobs completed and never came back.
/// jemalloc's background threads hand unused pages back to the system after a few seconds.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read before `_RJEM_MALLOC_CONF` (which still overrides them): pages
/// freed go back to the system after a second instead of ten, and at once when purged, so
/// `serve`'s RSS follows what it holds rather than its busiest moment (the load run saw RSS
/// swing 30 MiB above the heap in use as jobs finished).
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: MallocConf = MallocConf(c"dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

/// The C string jemalloc reads at start-up.
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: it points at a static string that nothing writes.
unsafe impl Sync for MallocConf {}

/// The allocator's own figures, for `/metrics`: bytes the program holds, and bytes of memory
/// the allocator keeps resident for it (RSS less code, stacks and what others map).
fn heap_figures() -> Option<api::telemetry::HeapFigures> {
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    Some(api::telemetry::HeapFigures {
        allocated: tikv_jemalloc_ctl::stats::allocated::read().ok()? as u64,
        resident: tikv_jemalloc_ctl::stats::resident::read().ok()? as u64,
    })
}

/// With the `profiling` feature and `_RJEM_MALLOC_CONF=prof:true`: each SIGUSR2 writes a heap
/// profile of what is allocated now (sampled), named by jemalloc's `prof_prefix`.
#[cfg(feature = "profiling")]
fn dump_heap_profiles_on_sigusr2() {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async {
        let Ok(mut usr2) = signal(SignalKind::user_defined2()) else {
            return;
        };
        while usr2.recv().await.is_some() {
            // SAFETY: `prof.dump` takes a pointer to a file name; null asks for jemalloc's own.
            let outcome = unsafe {
                tikv_jemalloc_ctl::raw::write(b"prof.dump\0", std::ptr::null::<std::ffi::c_char>())
            };
            tracing::info!(?outcome, "heap profile written");
        }
    });
}

fn variables_help() -> String {
    let mut text = String::from("Environment variables (default):\n");
    for (name, default, what) in config::VARIABLES {
        text.push_str(&format!("  {name:<24} {what} [{default}]\n"));
    }
    text
}

#[derive(Parser)]
#[command(name = "brightrun", version, about = "BrightRun: conversation datasets to LoRA adapters", after_help = variables_help())]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: creates and migrates the database, then serves the roles.
    Serve {
        /// Comma-separated roles: api, relay, projections (or all).
        #[arg(long, default_value = "all")]
        roles: String,
    },
    /// Create the database if missing and apply migrations.
    Migrate,
    /// Rebuild read models from the start of the event log, blue/green.
    Replay {
        /// A projection name (`datasets`) or `all`.
        projection: String,
    },
    /// Print the OpenAPI document (as checked in under openapi/).
    Openapi,
    /// Give a user a role: user, admin or billing_admin.
    GrantRole { email: String, role: String },
    /// Subscribe to `<NATS_SUBJECT_PREFIX>.>` (or one job's events) and print every event
    /// envelope as it arrives (docs/events.md describes them).
    Watch {
        /// Only this job's events: its own and its metrics, progress and logs.
        #[arg(long)]
        job: Option<uuid::Uuid>,
    },
    /// The whole journey through the API: sign up, upload the example dataset, estimate,
    /// train, follow it live, download and verify the adapter, print the costs. Without
    /// `--url` it starts the service here on the embedded defaults and keeps it up afterwards.
    Demo {
        /// A running service to use instead (e.g. http://127.0.0.1:8080).
        #[arg(long)]
        url: Option<String>,
    },
    /// Audits the books: `audit costs` recomputes the ledger from the event store and
    /// compares it with the read models and the cluster's bills; exits 1 on any difference.
    Audit {
        #[command(subcommand)]
        what: AuditWhat,
    },
    /// Events a subscription parked after failing on them (`list`), and asking its leader
    /// in a running `serve` to handle them again (`retry`).
    Parked {
        #[command(subcommand)]
        what: ParkedWhat,
    },
    /// Run the embedded S3-protocol object store as a server of its own, over
    /// `<BRIGHTRUN_DATA_DIR>/objects` with `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (unset:
    /// keys of its own, in `<BRIGHTRUN_DATA_DIR>/object-store-credentials`): point `S3_ENDPOINT`
    /// of each `serve` at it, with the same keys. Cross-origin requests from `CONSOLE_ORIGINS`
    /// only.
    ObjectStore {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:9000")]
        addr: std::net::SocketAddr,
    },
    /// Run the GPU cluster simulator (openapi/cluster.yaml) as a server of its own.
    ClusterSim {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:9090")]
        addr: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum ParkedWhat {
    /// The parked events not yet handled, in log order.
    List {
        /// Only this subscription's (`projection.jobs`, `worker.dataset-validation`, ...).
        #[arg(long)]
        subscription: Option<String>,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Handle parked events again (those named, or all), out of order; waits for the
    /// outcome and exits 1 unless every one was handled.
    Retry {
        /// Event ids (all the parked ones when none is named).
        events: Vec<uuid::Uuid>,
        #[arg(long)]
        subscription: Option<String>,
        /// How long to wait for the outcome, in seconds.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
}

#[derive(Subcommand)]
enum AuditWhat {
    Costs {
        /// Only this user's entries.
        #[arg(long)]
        user: Option<uuid::Uuid>,
        /// From this billing day (YYYY-MM-DD, UTC), inclusive.
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// Up to this billing day, inclusive: the ledger as it stood at the end of it.
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's journey lines are what a newcomer reads: its service logs only warnings
    // (RUST_LOG overrides).
    let level = if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    api::telemetry::init_logging(level);
    api::telemetry::set_heap_probe(heap_figures);
    #[cfg(feature = "profiling")]
    dump_heap_profiles_on_sigusr2();
    match run(cli.command).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    if let Command::Openapi = command {
        print!("{}", api::openapi::to_pretty_json());
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::from_env()?;
    match command {
        Command::Serve { roles } => {
            let roles = api::Roles::parse(&roles).map_err(anyhow::Error::msg)?;
            api::serve(config, roles).await?;
        }
        Command::Migrate => {
            db::prepare(&config.database_url, 2).await?;
            println!("database migrated");
        }
        Command::Replay { projection } => {
            let pool = db::prepare(&config.database_url, 4).await?;
            let selected = if projection == "all" {
                projections::all()
            } else {
                vec![projections::by_name(&projection)
                    .ok_or_else(|| anyhow::anyhow!("unknown projection '{projection}'"))?]
            };
            // Two at a time (each rebuilds its own tables under its own checkpoint, so they
            // are independent): one keeps Postgres busy while the other decodes its events.
            use futures::StreamExt;
            let mut reports = futures::stream::iter(selected)
                .map(|projector| projections::replay::replay(&pool, projector))
                .buffered(2);
            let mut differences = 0;
            while let Some(report) = reports.next().await {
                let report = report?;
                println!(
                    "{}: replayed {} events up to position {}; {} rows differed from the live tables",
                    report.projection, report.events, report.position.global_position, report.differences
                );
                differences += report.differences;
            }
            if differences > 0 {
                return Ok(ExitCode::from(2));
            }
        }
        Command::GrantRole { email, role } => {
            let role = Role::parse(&role)
                .ok_or_else(|| anyhow::anyhow!("role must be user, admin or billing_admin"))?;
            let pool = db::prepare(&config.database_url, 2).await?;
            let users = Users(pool);
            let user = users
                .by_email(&email)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no user with email {email}"))?;
            users.set_role(user.id, role).await?;
            println!("{email} is now {}", role.as_str());
        }
        Command::Watch { job } => {
            use futures::StreamExt;
            let client = async_nats::connect(&config.nats_url).await?;
            let subject = match job {
                Some(job) => format!("{}.*.{job}.*", config.nats_subject_prefix),
                None => format!("{}.>", config.nats_subject_prefix),
            };
            let mut messages = client.subscribe(subject.clone()).await?;
            eprintln!("watching {subject} on {}", config.nats_url);
            while let Some(message) = messages.next().await {
                println!(
                    "{} {}",
                    message.subject,
                    String::from_utf8_lossy(&message.payload)
                );
            }
        }
        Command::Demo { url } => {
            let out = config.data_dir.join("demo");
            match url {
                Some(url) => {
                    api::demo::journey(&url, &out).await?;
                }
                None => {
                    let mut config = config;
                    // A watchable run of the small example: 20x time, frequent status reads.
                    if std::env::var_os("CLUSTER_SIM_SPEED").is_none() {
                        config.cluster_sim_speed = 20.0;
                    }
                    if std::env::var_os("SAGA_POLL_INTERVAL_MS").is_none() {
                        config.saga_poll_interval = std::time::Duration::from_millis(250);
                    }
                    let addr = config.addr;
                    let service = api::start(config, api::Roles::ALL, Default::default()).await?;
                    let listener = api::http_server::listen(addr)
                        .with_context(|| format!("cannot listen on {addr} (set BRIGHTRUN_ADDR, or pass --url to use a running service)"))?;
                    let base = format!("http://{}", listener.local_addr()?);
                    let server = service.serve_http(listener, std::future::pending());
                    tokio::spawn(async move {
                        let _ = server.await;
                    });
                    println!("BrightRun is up at {base} (API docs at {base}/api/docs)");
                    let started = std::time::Instant::now();
                    let result = api::demo::journey(&base, &out).await;
                    match &result {
                        Ok(_) => println!("journey done in {:.1} s; the service stays up at {base}: Ctrl-C to stop", started.elapsed().as_secs_f64()),
                        Err(err) => eprintln!("demo failed: {err:#}"),
                    }
                    if result.is_ok() {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                    service.stop().await;
                    result?;
                }
            }
        }
        Command::Audit {
            what:
                AuditWhat::Costs {
                    user,
                    from,
                    to,
                    json,
                },
        } => {
            let pool = db::prepare(&config.database_url, 4).await?;
            let filter = infrastructure::audit::AuditFilter { user, from, to };
            let report = infrastructure::audit::audit_costs(&pool, &filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", infrastructure::audit::render(&report));
            }
            if !report.clean() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Parked { what } => {
            let pool = db::prepare(&config.database_url, 2).await?;
            return match what {
                ParkedWhat::List { subscription, json } => {
                    let parked =
                        infrastructure::parking::list(&pool, subscription.as_deref()).await?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&parked)?);
                    } else {
                        print!("{}", api::parked::render(&parked));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                ParkedWhat::Retry {
                    events,
                    subscription,
                    wait,
                } => {
                    let wait = std::time::Duration::from_secs(wait);
                    let all_handled =
                        api::parked::retry(&pool, subscription.as_deref(), &events, wait).await?;
                    Ok(if all_handled {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    })
                }
            };
        }
        Command::ObjectStore { addr } => {
            let (access_key, secret_key) = infrastructure::s3::embedded_credentials(
                &config.data_dir,
                (
                    config.aws_access_key_id.as_deref(),
                    config.aws_secret_access_key.as_deref(),
                ),
            )?;
            let store = infrastructure::s3::EmbeddedS3::start(
                config.data_dir.join("objects"),
                addr,
                &access_key,
                &secret_key,
                config.http_header_read_timeout,
                &config.console_origins,
            )
            .await?;
            eprintln!("S3-protocol object store on {}", store.endpoint);
            let _ = tokio::signal::ctrl_c().await;
        }
        Command::ClusterSim { addr } => {
            let tokenizer = std::sync::Arc::new(infrastructure::tokenizer::O200k::load()?);
            let sim = infrastructure::cluster_sim::server::ClusterSim::start(
                infrastructure::cluster_sim::server::SimSettings {
                    data_dir: config.data_dir.join("cluster-sim"),
                    speed: config.cluster_sim_speed,
                    api_key: config.cluster_api_key.clone(),
                    seed: config.cluster_sim_seed,
                    rates: config.rates.clone(),
                    webhook_secret: None,
                },
                addr,
                tokenizer,
            )
            .await?;
            eprintln!(
                "GPU cluster simulator on {} (speed {}x)",
                sim.url, config.cluster_sim_speed
            );
            let _ = tokio::signal::ctrl_c().await;
        }
        Command::Openapi => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}
