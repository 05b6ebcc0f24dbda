//! The `superx` command: `superx serve` runs a gateway node.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use superx::config::{Config, Overrides};
use superx::gateway::Gateway;

/// How long the raft node may take to stop after the drain (it flushes and closes storage).
const RAFT_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a draining leader tries to hand leadership to another voter.
const HAND_OFF_TIMEOUT: Duration = Duration::from_secs(3);

/// After `serve` returns, tasks still running (agent calls past the drain) get this long.
const RUNTIME_STOP_TIMEOUT: Duration = Duration::from_secs(1);

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "superx", version, about = "A clustered gateway for the Agent2Agent (A2A) protocol")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Public API address (default 0.0.0.0:4000; env PORT sets the port).
    #[arg(long)]
    listen: Option<String>,
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory for local state (default ./superx-data).
    #[arg(long)]
    data_dir: Option<String>,
    /// YAML file of agents to register at startup (env AGENTS_FILE).
    #[arg(long)]
    agents_file: Option<String>,
    /// This node's id in the cluster (default: stored in the data dir, else derived; see README).
    #[arg(long)]
    node_id: Option<u64>,
    /// Internal raft listener (default 127.0.0.1:4100).
    #[arg(long)]
    raft_listen: Option<String>,
    /// Static cluster: 1=host:raftport@host:apiport,2=... (this node included).
    #[arg(long)]
    peers: Option<String>,
    /// UDP gossip listener (default 127.0.0.1:4200).
    #[arg(long)]
    gossip_listen: Option<String>,
    /// How nodes find each other: static, gossip, dns or kubernetes (env CLUSTER_STRATEGY).
    #[arg(long)]
    strategy: Option<String>,
    /// Gossip seeds for the gossip strategy: host:port,host:port.
    #[arg(long)]
    seeds: Option<String>,
    /// Found a new cluster once this many nodes see each other (first boot only).
    #[arg(long)]
    bootstrap_expect: Option<u64>,
    /// Also start the built-in demo echo agent on loopback and register it as `echo`
    /// (a demo: for trying superx out, not for production).
    #[arg(long)]
    demo: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a gateway node.
    Serve(Box<ServeArgs>),
    /// Ask a node to leave the cluster on purpose; returns once it is out of the membership
    /// (the node then stops).
    Leave {
        /// The node's API (env SUPERX_URL; default http://127.0.0.1:4000).
        #[arg(long, env = "SUPERX_URL", default_value = "http://127.0.0.1:4000")]
        url: String,
    },
    #[command(flatten)]
    Client(superx::cli::ClientCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Check this node's health (exit 0 on HTTP 200): the container image's HEALTHCHECK.
    Probe {
        /// The node's API (default http://127.0.0.1:$PORT, PORT defaulting to 4000).
        #[arg(long)]
        url: Option<String>,
        /// /health (the process serves) or /ready (it knows a leader and has caught up).
        #[arg(long, default_value = "/health")]
        path: String,
    },
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let demo;
    let overrides = match cli.command {
        Command::Leave { url } => return leave(&url),
        Command::Probe { url, path } => return probe(url, &path),
        Command::Client(command) => return superx::cli::run(command),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "superx", &mut script);
            // A closed pipe (`| head`) is the reader's choice, not an error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            return ExitCode::SUCCESS;
        }
        Command::Serve(args) => {
            let ServeArgs {
                listen,
                config,
                data_dir,
                agents_file,
                node_id,
                raft_listen,
                peers,
                gossip_listen,
                strategy,
                seeds,
                bootstrap_expect,
                demo: with_demo,
            } = *args;
            demo = with_demo;
            Overrides {
                config_file: config,
                listen,
                data_dir,
                agents_file,
                node_id,
                raft_listen,
                peers,
                gossip_listen,
                strategy,
                seeds,
                bootstrap_expect,
            }
        }
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let config = match Config::load(&overrides, &env) {
        Ok(c) => c,
        Err(errors) => {
            eprint!("superx: {errors}");
            return ExitCode::from(2);
        }
    };
    superx::telemetry::init(&config.log.level, &config.log.format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("superx: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(config, demo));
    // Never hang on exit: whatever still runs (an agent call past the drain) is dropped.
    runtime.shutdown_timeout(RUNTIME_STOP_TIMEOUT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "superx stopped");
            if let Some(hint) = hint_for(&e) {
                eprintln!("superx: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Says at start whether callers must authenticate; an open gateway says so loudly (config
/// loading already refused an open one on a non-loopback address unless `auth.allow_open`).
fn log_auth(auth: &superx::config::AuthSection, listen: &str) {
    if auth.required() {
        let jwt = !auth.jwt_hs256_secret.is_empty() || !auth.jwks_url.is_empty() || auth.jwt_oidc_discovery;
        tracing::info!(api_keys = true, jwt, admin_token = !auth.admin_token.is_empty(), "auth required");
    } else {
        tracing::warn!(
            %listen,
            allow_open = auth.allow_open,
            "AUTH IS OFF: anyone who reaches this port may call every agent, read every task and change the \
             control plane (agents, keys). Set auth.mode = \"required\" to require credentials (README, \"Security\")"
        );
    }
}

async fn serve(mut config: Config, demo: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("creating data dir {}", config.server.data_dir))?;
    let env: HashMap<String, String> = std::env::vars().collect();
    config.server.node_id = superx::membership::identity::resolve(&config, &env)?;
    superx::membership::identity::check_cluster_id(&config)?;
    let listen = config.server.listen.clone();
    if demo {
        let agent = superx::demo::start().await.context("starting the demo agent")?;
        config.initial_agents.retain(|a| a.id != superx::demo::AGENT_ID);
        config.initial_agents.push(agent.spec());
    }
    let gw = Gateway::start(config).await?;
    let tls = match gw.config.server.tls_enabled() {
        true => {
            let s = &gw.config.server;
            let tls = superx::tls::Tls::load(s.tls_cert_file.as_ref(), s.tls_key_file.as_ref())
                .map_err(|e| anyhow::anyhow!("server.tls_cert_file/tls_key_file: {e}"))?;
            tls.spawn_reload(Duration::from_millis(s.tls_reload_ms));
            Some(tls)
        }
        false => None,
    };
    let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| port_error(&listen, e))?;
    tracing::info!(%listen, tls = tls.is_some(), "superx listening");
    log_auth(&gw.config.auth, &listen);
    if gw.keyring.is_none() {
        let c = &gw.config;
        let gossip = (c.cluster.strategy != "static").then_some(c.cluster.gossip_listen.as_str());
        superx::membership::secret::warn_open(&c.raft.listen, gossip, c.cluster.allow_open);
    }
    print_banner(&gw, &listen, demo);
    let startup = gw.clone();
    tokio::spawn(async move { startup.register_initial_agents().await });
    superx::membership::spawn(&gw);
    tokio::spawn(superx::push::deliverer::run(gw.clone()));
    if let Some(archive) = gw.archive.clone() {
        tokio::spawn(superx::archive::archiver::run(gw.clone(), archive));
    }
    let signalled = gw.clone();
    let shutdown = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = signalled.stopping() => tracing::info!("stopping after leaving the cluster"),
        }
        // Refuse new requests, end open streams; axum stops accepting and waits for the rest.
        signalled.admission.drain();
    };
    let router = superx::http::router(gw.clone());
    let served: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> = match tls {
        Some(tls) => {
            let listener = superx::tls::TlsListener::new(listener, tls.acceptor)?;
            Box::pin(axum::serve(listener, router).with_graceful_shutdown(shutdown).into_future())
        }
        None => {
            // SSE writes many small frames: without TCP_NODELAY, Nagle and delayed ACKs hold
            // each one back by tens of milliseconds.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%error, "could not set TCP_NODELAY");
                }
            });
            Box::pin(axum::serve(listener, router).with_graceful_shutdown(shutdown).into_future())
        }
    };
    let drain_timeout = Duration::from_millis(gw.config.server.drain_timeout_ms);
    let deadline = async {
        gw.admission.drained().await;
        let (requests, streams) = gw.admission.in_flight();
        tracing::info!(requests, streams, timeout = ?drain_timeout, "draining");
        tokio::time::sleep(drain_timeout).await;
    };
    let served = tokio::select! {
        served = served => served.context("serving"),
        _ = deadline => {
            let (requests, streams) = gw.admission.in_flight();
            tracing::warn!(requests, streams, "drain timeout: closing what is still open");
            Ok(())
        }
    };
    // Raft last: requests that were finishing may still have needed it. A leader first hands
    // over to a caught-up voter, so the cluster does not wait out an election.
    if gw.admission.is_draining() {
        let started = std::time::Instant::now();
        let outcome = gw.replica.raft().hand_off_leadership(HAND_OFF_TIMEOUT).await;
        match outcome {
            superx_raft::HandOff::Done { leader } => {
                tracing::info!(leader, took = ?started.elapsed(), "leadership handed over")
            }
            superx_raft::HandOff::TimedOut => {
                tracing::warn!("leadership hand-off timed out; the cluster elects once this node is gone")
            }
            superx_raft::HandOff::NotLeader | superx_raft::HandOff::NoOtherVoter => {}
        }
    }
    if tokio::time::timeout(RAFT_STOP_TIMEOUT, gw.stop()).await.is_err() {
        tracing::warn!("raft did not stop in time; exiting anyway");
    }
    tracing::info!("stopped");
    served
}

/// What to do next about a startup failure a newcomer is likely to meet.
fn hint_for(e: &anyhow::Error) -> Option<String> {
    let in_use = e
        .chain()
        .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse));
    let text = format!("{e:#}");
    if in_use || text.contains("Address already in use") {
        return Some(
            "an address this node needs is in use: another superx (or another program) listens there. Stop it, or give this \
             node its own --listen, --raft-listen and --gossip-listen ports (README, Configuration)"
                .into(),
        );
    }
    None
}

/// A port in use or not ours, said so that a newcomer knows what to do.
fn port_error(listen: &str, e: std::io::Error) -> anyhow::Error {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "cannot listen on {listen}: the address is in use (another superx?). Stop it, or pick another port with --listen or PORT"
        ),
        std::io::ErrorKind::PermissionDenied => {
            anyhow::anyhow!(
                "cannot listen on {listen}: permission denied (ports below 1024 need privileges); use --listen"
            )
        }
        _ => anyhow::anyhow!("cannot listen on {listen}: {e}"),
    }
}

/// Where to look, on stderr beside the logs: the API, the dashboard, a first command.
fn print_banner(gw: &Gateway, listen: &str, demo: bool) {
    let base = match gw.config.server.public_url.trim_end_matches('/') {
        "" => {
            let scheme = if gw.config.server.tls_enabled() { "https" } else { "http" };
            format!("{scheme}://{}", listen.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]"))
        }
        public => public.to_string(),
    };
    let mut lines = vec![
        String::new(),
        format!("  superx {} is up (node {})", env!("CARGO_PKG_VERSION"), gw.config.server.node_id),
    ];
    if demo {
        lines.push("  DEMO: the built-in echo agent is registered as `echo` (for trying superx out only)".into());
        lines.push(format!("  Agent API   {base}/agents/echo   (JSON-RPC and HTTP+JSON, A2A 1.0 and 0.3)"));
    } else {
        lines.push(format!("  Agents      {base}/agents/<id>"));
    }
    if gw.config.ui.enabled {
        lines.push(format!("  Dashboard   {base}/ui"));
    }
    lines.push(format!("  Health      {base}/health   Metrics {base}/metrics"));
    let url = if base == "http://127.0.0.1:4000" { String::new() } else { format!("SUPERX_URL={base} ") };
    if demo {
        lines.push(format!("  Try         {url}superx send echo hello superx --stream"));
    } else {
        lines.push(format!("  Try         {url}superx agents list"));
    }
    lines.push(String::new());
    eprintln!("{}", lines.join("\n"));
}

/// `superx leave`: asks the node to leave and waits for its answer.
fn leave(url: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("superx: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(superx::membership::leave::request(url)) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("superx leave: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `superx probe`: one GET of the node's own health endpoint.
fn probe(url: Option<String>, path: &str) -> ExitCode {
    let tls = std::env::var("SUPERX_SERVER__TLS_CERT_FILE").is_ok_and(|f| !f.is_empty());
    let url = url.unwrap_or_else(|| superx::probe::default_url(std::env::var("PORT").ok().as_deref(), tls));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("superx: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(superx::probe::check(&url, path)) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("superx probe: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// Turns transparent huge pages off for this process. The allocator asks for huge pages on
/// its arenas; every page it gives back and takes again then faults in a fresh 2 MiB page the
/// kernel has to zero. Under load that zeroing was 13% of the worker threads' time in a
/// 3-node cluster and doubled p99 latency; with 4 KiB pages it is gone.
fn disable_transparent_huge_pages() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        // Old kernels lack it; the gateway works the same, a little slower.
        eprintln!("superx: could not turn transparent huge pages off: {e}");
    }
}
