//! `dbwarden run` and `dbwarden detach`: validate everything, bind, attach, serve, shut down.
//!
//! Order matters for fail-closed behaviour: configuration is validated before anything is bound
//! or attached; the listeners are bound before the programs start redirecting to them; on
//! shutdown the programs stay attached (pinned), so agents are refused rather than bypassing.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    cli::{DetachArgs, LogFormat, RunArgs},
    config::{FileConfig, Overrides, Settings, DEFAULT_CONFIG_PATH},
    intercept::{self, InterceptConfig, Interceptor},
    pipeline::{load_hmac_key, Pipeline, PolicySource},
    server::{self, Shared},
};

/// Exit code for configuration/usage errors.
pub const EXIT_USAGE: i32 = 2;
/// Exit code for runtime failures.
pub const EXIT_FAILURE: i32 = 1;

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DBWARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => b
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => b.try_init(),
    };
}

fn load_settings(
    config: Option<PathBuf>,
    o: Overrides,
) -> Result<Settings, crate::config::ConfigError> {
    let (path, explicit) = match config {
        Some(p) => (p, true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let file = FileConfig::load(&path, explicit)?;
    Settings::build(file, &path.display().to_string(), o)
}

/// Entry point of `dbwarden run`; returns the process exit code.
pub fn main(args: RunArgs) -> i32 {
    init_logging(args.log_format);
    let overrides = Overrides {
        cgroups: args.cgroups,
        listen: args.listen,
        policy: args.policy,
        sessions_dir: args.sessions_dir,
        runtime_dir: args.runtime_dir,
        bpffs_dir: args.bpffs_dir,
        no_ipv6: args.no_ipv6,
        unix_mode: args.unix_mode,
    };
    let settings = match load_settings(args.config, overrides) {
        Ok(s) => s,
        Err(e) => {
            error!("configuration error: {e}");
            eprintln!("dbwarden: configuration error: {e}");
            return EXIT_USAGE;
        }
    };
    // The policy is validated before anything is bound or attached: a bad policy is a
    // configuration error (exit 2), named by file:line:column.
    if let Err(e) = PolicySource::load(settings.policy.as_deref())
        .and_then(|src| crate::pipeline::validate(&src))
    {
        error!("policy error: {e:#}");
        eprintln!("dbwarden: policy error: {e:#}");
        return EXIT_USAGE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dbwarden: cannot start the runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    match rt.block_on(serve(settings)) {
        Ok(()) => 0,
        Err(e) => {
            error!("{e:#}");
            eprintln!("dbwarden: {e:#}");
            EXIT_FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    use anyhow::Context;
    intercept::check_privileges()?;
    let state_dir = settings
        .sessions_dir
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| "/var/lib/dbwarden".into());
    let policy = PolicySource::load(settings.policy.as_deref())?;
    let hmac = load_hmac_key(&state_dir.join("mask_hmac.key"))?;
    let pipeline = Pipeline::new(&policy, hmac, state_dir.clone(), &settings.recording)
        .context("loading the policy")?;
    let store = if settings.recording.enabled {
        let key = dbwarden_record::HostKey::load_or_create(&settings.recording.key_file)
            .with_context(|| {
                format!("host signing key {}", settings.recording.key_file.display())
            })?;
        let store = dbwarden_record::SessionStore::open(&settings.sessions_dir, Arc::new(key))
            .with_context(|| format!("sessions directory {}", settings.sessions_dir.display()))?;
        Some(store)
    } else {
        warn!("session recording is disabled: no audit trail will be written");
        None
    };
    let l4 = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| {
            format!(
                "binding the listener {} (set `listen` or --listen)",
                settings.listen
            )
        })?;
    let mut listeners = vec![l4];
    let mut listen_v6 = None;
    if settings.listen_v6 {
        let a = SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), settings.listen.port());
        match tokio::net::TcpListener::bind(a).await {
            Ok(l) => {
                listen_v6 = Some(a);
                listeners.push(l);
            }
            Err(e) => {
                warn!(addr = %a, error = %e, "no IPv6 listener; IPv6 agent connections will be refused")
            }
        }
    }
    refuse_if_controlled(&settings)?;
    let resolver = crate::unix_listen::bind(&settings)?;
    let mut interceptor = Interceptor::start(InterceptConfig {
        bpffs_dir: settings.bpffs_dir.clone(),
        cgroups: settings.cgroups.clone(),
        ports: settings.ports.clone(),
        networks: settings.networks.clone(),
        deny_ports: settings.deny_ports.clone(),
        listen_v4: settings.listen,
        listen_v6,
    })
    .context("attaching interception")?;
    let unix = crate::intercept::unix::UnixInterceptor::start(
        &settings.bpffs_dir,
        &settings.cgroups,
        &crate::unix_listen::kernel_settings(&settings),
    )
    .context("attaching Unix-socket interception")?;
    match &unix {
        Some(u) => info!(
            mode = u.mode().name(),
            resolver = %crate::unix_listen::resolver_path(&settings).display(),
            "Unix-socket interception active"
        ),
        None => warn!("Unix-socket interception off ([intercept] unix_mode = \"off\")"),
    }

    if let Some(logger) = interceptor.logger.take() {
        // SAFETY: the AsyncFd owns the logger, and with it the ring buffer fd, for as long as
        // the registration lives; nothing else closes that fd.
        match unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) } {
            Ok(mut fd) => {
                tokio::spawn(async move {
                    loop {
                        let Ok(mut guard) = fd.readable_mut().await else {
                            break;
                        };
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                });
            }
            Err(e) => warn!(error = %e, "eBPF log forwarding unavailable"),
        }
    }

    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;
    let metrics = Arc::new(crate::metrics::Metrics::default());
    if let Some(addr) = settings.metrics_listen {
        crate::metrics::serve(addr, metrics.clone(), shutdown.clone())
            .await
            .with_context(|| format!("binding metrics_listen {addr}"))?;
    }
    let approvals = crate::approvals::start(&settings, &shutdown, metrics.clone()).await?;
    let shared = Arc::new(Shared {
        unix,
        resolve: crate::unix_listen::resolve_settings(&settings),
        metrics,
        approvals: approvals.clone(),
        settings: settings.clone(),
        interceptor,
        shutdown: shutdown.clone(),
        next_session: std::sync::atomic::AtomicU64::new(1),
        cancel: Default::default(),
        pipeline,
        store,
        catalog: Default::default(),
    });
    info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %settings.listen,
        listen_v6 = ?listen_v6,
        cgroups = ?settings.cgroups.iter().map(|c| c.path.display().to_string()).collect::<Vec<_>>(),
        ports = ?settings.ports.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        bpffs_dir = %settings.bpffs_dir.display(),
        "dbwarden ready"
    );
    spawn_policy_reloader(shared.clone())?;
    let sd = shutdown.clone();
    tokio::spawn(async move {
        sd.cancelled().await;
        let n = approvals.cancel_all("daemon shutting down");
        if n > 0 {
            info!(pending = n, "pending approvals cancelled by shutdown");
        }
    });
    server::run(listeners, resolver, shared, Duration::from_secs(10)).await;
    info!("stopped; interception stays attached (agents are refused until a daemon runs again)");
    Ok(())
}

/// The daemon must not itself be subject to interception: its upstream connections would be
/// redirected back to it, and it must not be exempted by anything an agent could also claim.
fn refuse_if_controlled(settings: &Settings) -> anyhow::Result<()> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(mine) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        return Ok(());
    };
    let mine = mine.trim();
    for cg in &settings.cgroups {
        let c = format!("/{}", cg.name.trim_matches('/'));
        if mine == c || mine.starts_with(&format!("{c}/")) {
            anyhow::bail!(
                "the daemon runs inside the controlled cgroup {c} ({mine}); run it outside the agents' cgroups (e.g. in dbwarden.service's own slice)"
            );
        }
    }
    Ok(())
}

/// Reloads the policy on SIGHUP and whenever the policy file changes (polled every 2 s). An
/// invalid policy is rejected with file:line:column and the old one stays in force.
fn spawn_policy_reloader(shared: Arc<Shared>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let path = shared.settings.policy.clone();
    tokio::spawn(async move {
        let stamp = |p: &std::path::Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().ok(), m.len()))
        };
        let mut last = path.as_deref().and_then(stamp);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            let why = tokio::select! {
                _ = hup.recv() => "SIGHUP",
                _ = tick.tick() => {
                    let Some(p) = path.as_deref() else { continue };
                    let now = stamp(p);
                    if now == last { continue; }
                    last = now;
                    "file changed"
                }
                _ = shared.shutdown.cancelled() => return,
            };
            match PolicySource::load(path.as_deref()) {
                Ok(src) => {
                    let old = shared.pipeline.policy_hash();
                    match shared.pipeline.reload(&src) {
                        Ok(hash) if hash == old => {
                            info!(trigger = why, hash = %hash, "policy unchanged")
                        }
                        Ok(hash) => {
                            crate::metrics::Metrics::inc(&shared.metrics.policy_reloads_total);
                            info!(trigger = why, origin = %src.origin, hash = %hash, old_hash = %old, "policy reloaded")
                        }
                        Err(e) => {
                            crate::metrics::Metrics::inc(
                                &shared.metrics.policy_reload_failures_total,
                            );
                            error!(trigger = why, error = %format!("{e:#}"), hash = %old, "policy reload rejected; the previous policy stays in force")
                        }
                    }
                }
                Err(e) => {
                    error!(trigger = why, error = %format!("{e:#}"), "policy reload failed; the previous policy stays in force")
                }
            }
        }
    });
    Ok(())
}

fn spawn_signal_handler(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
        shutdown.cancel();
    });
    Ok(())
}

/// Entry point of `dbwarden detach`.
pub fn detach_main(args: DetachArgs) -> i32 {
    init_logging(LogFormat::Text);
    let bpffs_dir = match args.bpffs_dir {
        Some(d) => d,
        None => match load_settings(args.config, Overrides::default()) {
            Ok(s) => s.bpffs_dir,
            Err(e) => {
                eprintln!("dbwarden detach: configuration error: {e}");
                return EXIT_USAGE;
            }
        },
    };
    let cg = match args
        .cgroup
        .as_deref()
        .map(crate::cgroup::Cgroup::resolve)
        .transpose()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dbwarden detach: {e}");
            return EXIT_USAGE;
        }
    };
    match intercept::detach(&bpffs_dir, cg.as_ref()) {
        Ok(removed) if removed.is_empty() => {
            println!("nothing pinned under {}", bpffs_dir.display());
            0
        }
        Ok(removed) => {
            for p in removed {
                println!("removed {}", p.display());
            }
            0
        }
        Err(e) => {
            eprintln!("dbwarden detach: {e}");
            EXIT_FAILURE
        }
    }
}
