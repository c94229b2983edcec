//! `keel serve`: runs the daemon (control loop, REST API, metrics) until
//! interrupted. With no config it runs the embedded default: a simulated
//! cluster replaying the bundled PlanetLab day in accelerated time.

use crate::toml_input::read_toml;
use anyhow::{bail, Context, Result};
use clap::Args;
use keel_daemon::auth::load_or_create_token;
use keel_daemon::{Automation, DaemonConfig, ServeOptions, Service, WallClock, DEFAULT_LISTEN};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Arguments of `keel serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (TOML, see docs/daemon.md). Without it: the embedded
    /// default (simulated cluster, full automation).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7878].
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Data directory (holds `token` and the history `keel.db`) [default: $XDG_DATA_HOME/keel or
    /// ~/.local/share/keel].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Automation level, overriding the config's: manual, partial, full.
    #[arg(long, value_parser = parse_automation)]
    automation: Option<Automation>,
    /// Only read and check the config (TLS files included), then exit.
    #[arg(long)]
    check_config: bool,
}

fn parse_automation(s: &str) -> Result<Automation, String> {
    match s {
        "manual" => Ok(Automation::Manual),
        "partial" => Ok(Automation::Partial),
        "full" => Ok(Automation::Full),
        _ => Err(format!("{s:?}: expected manual, partial or full")),
    }
}

pub(crate) fn default_data_dir() -> Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("keel"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/keel")),
        None => bail!("no data directory: set --data-dir, XDG_DATA_HOME or HOME"),
    }
}

fn read_config(path: &Path) -> Result<DaemonConfig> {
    read_toml(path, "config")
}

/// Runs `keel serve` until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> Result<()> {
    let started = Instant::now();
    let mut config = match &args.config {
        Some(path) => read_config(path)?,
        None => DaemonConfig::embedded_default(),
    };
    if let Some(listen) = args.listen {
        config.listen = Some(listen);
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = Some(dir);
    }
    if let Some(automation) = args.automation {
        config.automation = automation;
    }
    config.check().context("config")?;
    let tls = match &config.tls {
        Some(tls) => Some(tls.server_config()?),
        None => None,
    };
    if args.check_config {
        let source = args
            .config
            .as_ref()
            .map_or("the embedded default".to_string(), |p| {
                p.display().to_string()
            });
        println!("{source}: ok");
        return Ok(());
    }
    // Colours only on a terminal: journald and log files get plain text.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(tracing::Level::INFO)
        .init();
    let data_dir = match &config.data_dir {
        Some(dir) => dir.clone(),
        None => default_data_dir()?,
    };
    let token = match &config.token {
        Some(token) => token.clone(),
        None => {
            let (token, made) = load_or_create_token(&data_dir)?;
            if made {
                tracing::info!(path = %data_dir.join("token").display(), "generated the API token");
            }
            token
        }
    };
    let listen = match config.listen {
        Some(listen) => listen,
        None => DEFAULT_LISTEN.parse()?,
    };
    if !listen.ip().is_loopback() && tls.is_none() {
        tracing::warn!(%listen, "listening beyond loopback without TLS: set [tls] cert and key in the config, or put a TLS proxy in front");
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let service: Service = config.open_service(Arc::new(WallClock), &data_dir)?;
    service
        .warm_up()
        .context("first observation of the cluster")?;
    let history_db = service.store().path().to_string();
    let service = Arc::new(service);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let interval = Duration::from_secs_f64(config.interval_seconds);
        let options = ServeOptions {
            listen,
            token,
            interval: Some(interval),
            tls,
        };
        let running = keel_daemon::start_with(service, options).await?;
        tracing::info!(
            url = %format!("{scheme}://{}/api/v1/cluster", running.local_addr),
            dashboard = %format!("{scheme}://{}/", running.local_addr),
            token_file = %data_dir.join("token").display(),
            history = %history_db,
            automation = ?config.automation,
            interval_seconds = config.interval_seconds,
            startup_ms = started.elapsed().as_millis() as u64,
            "keel serve is up"
        );
        wait_for_signal().await;
        tracing::info!("stopping");
        running.shutdown().await;
        Ok(())
    })
}

/// Returns at Ctrl-C or SIGTERM.
pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
