//! Starting and stopping the router: templates, workers, ingest, graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::ingest::App;
use crate::metrics::Metrics;
use crate::queue::QueueSet;
use crate::render::Templates;
use crate::routing::Router;
use crate::service::IngestService;
use crate::shared::Core;
use crate::worker::Worker;

/// How long workers get to drain their queues on shutdown.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// A running router.
pub struct Running {
    pub addr: SocketAddr,
    pub core: Arc<Core>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Start on `cfg.listen`, or on `listener` when given (tests bind 127.0.0.1:0).
pub async fn start(cfg: Config, listener: Option<TcpListener>) -> anyhow::Result<Running> {
    let templates = Templates::load(&cfg).context("loading templates")?;
    let router = Router::new(&cfg).map_err(|e| anyhow::anyhow!("{}: {e}", cfg.source))?;
    let metrics = Metrics::new(
        &cfg.outputs
            .iter()
            .map(|o| (o.name.clone(), o.kind.as_str()))
            .collect::<Vec<_>>(),
    );
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(&cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?,
    };
    let addr = listener.local_addr()?;
    let (queues, consumers, stop_workers) = QueueSet::open(&cfg)?;
    let core = Arc::new(Core {
        config: Arc::new(cfg),
        metrics,
        templates: RwLock::new(Arc::new(templates)),
    });
    let mut workers = tokio::task::JoinSet::new();
    for (i, consumer) in consumers.into_iter().enumerate() {
        let w = Worker::new(i, core.clone())
            .with_context(|| format!("starting output {}", core.config.outputs[i].name))?;
        workers.spawn(w.run(consumer));
    }
    let app = Arc::new(App {
        core: core.clone(),
        router,
        queues,
        ready: AtomicBool::new(true),
    });
    let (tx, rx) = oneshot::channel::<()>();
    let service = IngestService::new(app.clone());
    drop(app);
    let tls = match &core.config.server_tls {
        Some(t) => Some(crate::tls_server::server_config(t)?),
        None => None,
    };
    let core_config = core.config.clone();
    let task = tokio::spawn(async move {
        let stop = async {
            let _ = rx.await;
        };
        let header_timeout = core_config.request_timeout;
        crate::tls_server::serve(listener, service, tls, header_timeout, stop)
            .await
            .context("HTTP server")?;
        // The server (and with it every queue sender) is gone: workers drain and stop.
        if let Some(s) = &stop_workers {
            let _ = s.send(true);
        }
        // Each worker is awaited once, through the set: those that finish leave it, so the
        // ones still there at the deadline are the ones to stop.
        let drain = async { while workers.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN_DEADLINE, drain).await.is_err() {
            tracing::warn!(
                outputs = workers.len(),
                "outputs did not drain within {DRAIN_DEADLINE:?}; the rest stays queued"
            );
            // Dropping the workers' readers persists their cursors.
            workers.abort_all();
            while workers.join_next().await.is_some() {}
        }
        Ok(())
    });
    tracing::info!(%addr, "aerie-router listening");
    Ok(Running {
        addr,
        core,
        shutdown: Some(tx),
        task,
    })
}

impl Running {
    /// Stop accepting, let in-flight requests finish, drain the queues (bounded by
    /// [`DRAIN_DEADLINE`]).
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.context("router task")?
    }

    /// Wait for the server to stop on its own (it only does on error).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.task).await.context("router task")?
    }
}
