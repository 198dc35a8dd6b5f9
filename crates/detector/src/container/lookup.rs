//! The lookup task: asks the runtimes about container ids sent by the event loop and sends
//! back what they said. Every lookup is bounded by the metadata timeout as a whole; a
//! runtime that fails or times out is reconnected on the next lookup, so a restarted
//! containerd is picked up without restarting the detector.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::cri::{CriRuntime, bounded};
use super::{ContainerInfo, LookupError, docker, docker_api_kind};
use crate::metrics::Metrics;

/// What the runtimes said about one 12-character id.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Found(String, Box<ContainerInfo>),
    /// No runtime knows it (every one answered "not found", or none is there).
    Unknown(String),
    /// A runtime failed or timed out: worth asking again later.
    Failed(String),
}

impl Answer {
    pub fn id(&self) -> &str {
        match self {
            Answer::Found(id, _) | Answer::Unknown(id) | Answer::Failed(id) => id,
        }
    }
}

/// Where and how long to ask.
#[derive(Debug, Clone)]
pub struct LookupConfig {
    /// CRI sockets, tried first, in order.
    pub cri_sockets: Vec<PathBuf>,
    /// Docker Engine API sockets, tried after the CRI ones.
    pub docker_sockets: Vec<PathBuf>,
    /// Bound of one lookup (all runtimes together) and of the start-up listing.
    pub timeout: Duration,
}

/// The event loop's end: send ids, receive answers.
pub struct Lookups {
    requests: mpsc::UnboundedSender<String>,
    pub answers: mpsc::UnboundedReceiver<Answer>,
}

impl Lookups {
    /// Ask about `id`; the answer comes on `answers`.
    pub fn ask(&self, id: String) {
        let _ = self.requests.send(id);
    }
}

/// Start the lookup task. It first lists the containers the CRI runtimes already run and
/// sends them as answers, then serves requests.
pub fn start(cfg: LookupConfig, metrics: Arc<Metrics>) -> Lookups {
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let (ans_tx, ans_rx) = mpsc::unbounded_channel();
    tokio::spawn(serve(cfg, metrics, req_rx, ans_tx));
    Lookups {
        requests: req_tx,
        answers: ans_rx,
    }
}

/// One runtime to ask within a lookup.
enum Ask {
    Cri {
        index: usize,
        client:
            k8s_cri::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
        kind: &'static str,
        socket: PathBuf,
    },
    Docker {
        socket: PathBuf,
    },
}

async fn serve(
    cfg: LookupConfig,
    metrics: Arc<Metrics>,
    mut requests: mpsc::UnboundedReceiver<String>,
    answers: mpsc::UnboundedSender<Answer>,
) {
    let cris_cfg = cfg.cri_sockets.clone();
    let mut cris: Vec<CriRuntime> = cris_cfg.iter().cloned().map(CriRuntime::new).collect();
    // Containers already running: listed once, on connections of their own, so that a
    // slow runtime delays neither the other runtimes nor the lookups.
    for socket in cris_cfg.into_iter().filter(|s| s.exists()) {
        let answers = answers.clone();
        let metrics = metrics.clone();
        let bound = cfg.timeout * 20;
        tokio::spawn(async move {
            let mut rt = CriRuntime::new(socket.clone());
            match bounded(&socket, bound, rt.list()).await {
                Ok(list) => {
                    tracing::info!(
                        socket = %socket.display(),
                        containers = list.len(),
                        "listed running containers"
                    );
                    for (id, info) in list {
                        let _ = answers.send(Answer::Found(id, Box::new(info)));
                    }
                }
                Err(e) => {
                    metrics
                        .containers
                        .count_error(matches!(e, LookupError::Timeout(..)));
                    tracing::warn!("{e}; containers already running get metadata as they are seen");
                }
            }
        });
    }
    let (reset_tx, mut reset_rx) = mpsc::unbounded_channel::<usize>();
    loop {
        tokio::select! {
            Some(index) = reset_rx.recv() => cris[index].reset(),
            req = requests.recv() => {
                let Some(id) = req else { break };
                metrics.containers.count_lookup();
                let mut plan = Vec::new();
                for (index, rt) in cris.iter_mut().enumerate() {
                    if !rt.socket().exists() {
                        continue;
                    }
                    let socket = rt.socket().to_path_buf();
                    match bounded(&socket, cfg.timeout, rt.client()).await {
                        Ok(client) => plan.push(Ask::Cri { index, client, kind: rt.kind(), socket }),
                        Err(e) => {
                            metrics.containers.count_error(matches!(e, LookupError::Timeout(..)));
                            tracing::warn!("{e}");
                            rt.reset();
                        }
                    }
                }
                let had_cri = plan.len();
                plan.extend(
                    cfg.docker_sockets
                        .iter()
                        .filter(|s| s.exists())
                        .map(|s| Ask::Docker { socket: s.clone() }),
                );
                // No runtime reachable (none up yet, or restarting): worth asking again.
                let failed_connect = had_cri < cris.iter().filter(|r| r.socket().exists()).count()
                    || (plan.is_empty() && !(cris.is_empty() && cfg.docker_sockets.is_empty()));
                let answers = answers.clone();
                let reset_tx = reset_tx.clone();
                let metrics = metrics.clone();
                let timeout = cfg.timeout;
                tokio::spawn(async move {
                    let answer = ask_all(&id, plan, timeout, &metrics, &reset_tx, failed_connect).await;
                    let _ = answers.send(answer);
                });
            }
        }
    }
}

/// How long to wait before asking again about an id no runtime knows yet.
const RETRY_UNKNOWN: Duration = Duration::from_millis(100);

/// Ask each runtime in `plan` in turn until one knows `id`; all of it within `timeout`.
/// A CRI runtime registers a pod's sandbox only once its first process runs, so an id no
/// runtime knows is asked again until the deadline.
async fn ask_all(
    id: &str,
    plan: Vec<Ask>,
    timeout: Duration,
    metrics: &Metrics,
    reset: &mpsc::UnboundedSender<usize>,
    mut failed: bool,
) -> Answer {
    let deadline = tokio::time::Instant::now() + timeout;
    let retry = plan.iter().any(|a| matches!(a, Ask::Cri { .. }));
    loop {
        for ask in &plan {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (result, index, socket) = match ask {
                Ask::Cri {
                    index,
                    client,
                    kind,
                    socket,
                } => {
                    let mut client = client.clone();
                    let r = bounded(
                        socket,
                        left,
                        super::cri::inspect_with(&mut client, kind, socket, id),
                    )
                    .await;
                    (r, Some(*index), socket)
                }
                Ask::Docker { socket } => {
                    let kind = docker_api_kind(socket);
                    let r = bounded(socket, left, docker::inspect(socket, kind, id)).await;
                    (r, None, socket)
                }
            };
            match result {
                Ok(Some(info)) => return Answer::Found(id.to_owned(), Box::new(info)),
                Ok(None) => {}
                Err(e) => {
                    failed = true;
                    metrics
                        .containers
                        .count_error(matches!(e, LookupError::Timeout(..)));
                    tracing::warn!(container = id, socket = %socket.display(), "{e}");
                    if let Some(i) = index {
                        let _ = reset.send(i);
                    }
                }
            }
        }
        if failed || !retry || tokio::time::Instant::now() + RETRY_UNKNOWN >= deadline {
            break;
        }
        tokio::time::sleep(RETRY_UNKNOWN).await;
    }
    if failed {
        Answer::Failed(id.to_owned())
    } else {
        Answer::Unknown(id.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::AsyncWriteExt;

    const ID: &str = "3f2a9c1b7d4e";

    fn sock(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aerie-lookup-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("cri.sock")
    }

    fn cfg(cri: Vec<PathBuf>, timeout_ms: u64) -> LookupConfig {
        LookupConfig {
            cri_sockets: cri,
            docker_sockets: Vec::new(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    async fn answer(l: &mut Lookups) -> Answer {
        tokio::time::timeout(Duration::from_secs(20), l.answers.recv())
            .await
            .expect("no answer within 20 s")
            .expect("lookup task ended")
    }

    #[tokio::test]
    async fn a_hanging_runtime_is_bounded_by_the_timeout() {
        let path = sock("hang");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        // Accepts, reads nothing, answers nothing.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                held.push(c);
            }
        });
        let metrics = Arc::new(Metrics::default());
        let mut l = start(cfg(vec![path.clone()], 300), metrics.clone());
        let t0 = Instant::now();
        l.ask(ID.into());
        assert_eq!(answer(&mut l).await, Answer::Failed(ID.into()));
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(5), "took {took:?}");
        assert!(metrics.containers.timeouts() >= 1);
        assert_eq!(metrics.containers.lookups(), 1);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn a_garbage_answer_is_an_error_not_a_panic() {
        let path = sock("garbage");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = listener.accept().await {
                let _ = c
                    .write_all(b"HTTP/1.1 200 OK\r\n\r\n\x00\xff garbage \x13\x37")
                    .await;
                let _ = c.shutdown().await;
            }
        });
        let metrics = Arc::new(Metrics::default());
        let mut l = start(cfg(vec![path.clone()], 2000), metrics.clone());
        l.ask(ID.into());
        assert_eq!(answer(&mut l).await, Answer::Failed(ID.into()));
        assert!(metrics.containers.errors() + metrics.containers.timeouts() >= 1);
        // The task is still there: a second question gets its answer too.
        l.ask("0123456789ab".into());
        assert_eq!(answer(&mut l).await, Answer::Failed("0123456789ab".into()));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn no_runtime_configured_means_unknown_and_absent_ones_mean_retry() {
        let metrics = Arc::new(Metrics::default());
        let mut none = start(cfg(Vec::new(), 100), metrics.clone());
        none.ask(ID.into());
        assert_eq!(answer(&mut none).await, Answer::Unknown(ID.into()));
        // Configured but not (yet) there, e.g. containerd restarting: ask again later.
        let mut absent = start(cfg(vec![sock("absent")], 100), metrics);
        absent.ask(ID.into());
        assert_eq!(answer(&mut absent).await, Answer::Failed(ID.into()));
    }
}
