//! Running the daemon: the HTTP server and the periodic control loop as
//! tokio tasks, stopped together.

use crate::api::{router, AppState};
use crate::service::{Service, StepReport};
use crate::tls::TlsListener;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Binding the listen address failed.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A running daemon; dropping it does not stop it, [`Running::shutdown`] does.
pub struct Running {
    /// The address actually bound (the port is chosen when asked for 0).
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops the loop and the server and waits for both.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts serving `service` on `listen` over plain HTTP with bearer
/// `token`; runs a control round every `interval` if given (tests drive
/// [`Service::step`] instead). Call within a tokio runtime.
pub async fn start(
    service: Arc<Service>,
    listen: SocketAddr,
    token: String,
    interval: Option<Duration>,
) -> Result<Running, ServeError> {
    start_with(
        service,
        ServeOptions {
            listen,
            token,
            interval,
            tls: None,
        },
    )
    .await
}

/// How to serve: address, token, control interval, TLS.
pub struct ServeOptions {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The bearer token.
    pub token: String,
    /// Control round period; `None`: no periodic loop.
    pub interval: Option<Duration>,
    /// HTTPS with this rustls config; `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Starts serving `service` as `options` say. Call within a tokio runtime.
pub async fn start_with(
    service: Arc<Service>,
    options: ServeOptions,
) -> Result<Running, ServeError> {
    let listen = options.listen;
    let bind_error = |source| ServeError::Bind {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    let (stop, stopped) = watch::channel(false);
    let app = router(Arc::new(AppState {
        service: service.clone(),
        token: options.token,
        allocation: std::sync::Mutex::new(crate::api_alloc::remembered(&service)),
    }));
    let mut on_stop = stopped.clone();
    let shutdown = async move {
        let _ = on_stop.wait_for(|s| *s).await;
    };
    let server = match options.tls {
        None => tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        }),
        Some(config) => {
            let listener = TlsListener::new(listener, config).map_err(bind_error)?;
            tokio::spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "the HTTPS server stopped");
                }
            })
        }
    };
    let mut tasks = vec![server];
    if let Some(interval) = options.interval {
        tasks.push(tokio::spawn(control_loop(service, interval, stopped)));
    }
    Ok(Running {
        local_addr,
        stop,
        tasks,
    })
}

async fn control_loop(
    service: Arc<Service>,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let s = service.clone();
        match tokio::task::spawn_blocking(move || s.step()).await {
            Ok(Ok(report)) => log_step(&service, &report),
            Ok(Err(e)) => tracing::warn!(error = %e, "control round failed"),
            Err(e) => tracing::error!(error = %e, "control round panicked"),
        }
    }
}

fn log_step(service: &Service, report: &StepReport) {
    let Some(id) = report.plan.filter(|_| report.new_plan) else {
        tracing::debug!("control round: no new plan");
        return;
    };
    if let Ok(plan) = service.plan(id) {
        tracing::info!(
            plan = id,
            state = ?plan.state,
            moves = plan.moves.len(),
            imbalance_before = plan.imbalance_before.std_dev,
            imbalance_after = plan.imbalance_after.std_dev,
            "control round made a plan"
        );
    }
}
