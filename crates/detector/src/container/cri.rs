//! The kubelet's Container Runtime Interface (`runtime.v1.RuntimeService`) on a unix socket:
//! containerd and CRI-O. `ContainerStatus` and `PodSandboxStatus` with `verbose` give a
//! container's name, image, mounts, privileges and its pod; `ListContainers` lists what
//! already runs at start-up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerStatusRequest, ContainerStatusResponse, ListContainersRequest,
    PodSandboxStatusRequest, PodSandboxStatusResponse, VersionRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

use super::LookupError;
use super::info::{ContainerInfo, Mount, PodInfo};
use crate::state::container::SHORT_ID_LEN;

/// A CRI runtime endpoint, connected on first use and again after a failure.
pub struct CriRuntime {
    socket: PathBuf,
    client: Option<RuntimeServiceClient<Channel>>,
    /// `containerd` or `cri-o` (Falco's `container.type`), from `Version`.
    kind: &'static str,
}

impl CriRuntime {
    pub fn new(socket: PathBuf) -> Self {
        CriRuntime {
            socket,
            client: None,
            kind: "cri",
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Falco's `container.type` for this runtime (known once connected).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    fn err(&self, e: tonic::Status) -> LookupError {
        LookupError::Rpc(
            self.socket.display().to_string(),
            e.code(),
            e.message().to_owned(),
        )
    }

    /// The connected client; connects (and asks `Version`) when there is none.
    pub async fn client(&mut self) -> Result<RuntimeServiceClient<Channel>, LookupError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let path = self.socket.clone();
        let channel = Endpoint::try_from("http://[::]:50051")
            .map_err(|e| LookupError::Connect(path.display().to_string(), e.to_string()))?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| {
                LookupError::Connect(self.socket.display().to_string(), error_chain(&e))
            })?;
        let mut client = RuntimeServiceClient::new(channel);
        let v = client
            .version(VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(|e| self.err(e))?
            .into_inner();
        self.kind = runtime_kind(&v.runtime_name);
        tracing::info!(
            socket = %self.socket.display(),
            runtime = %v.runtime_name,
            version = %v.runtime_version,
            "connected to the CRI runtime"
        );
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Forget the connection: the next call reconnects (the runtime may have restarted).
    pub fn reset(&mut self) {
        self.client = None;
    }

    /// Every container the runtime knows, by 12-character id.
    pub async fn list(&mut self) -> Result<Vec<(String, ContainerInfo)>, LookupError> {
        let mut client = self.client().await?;
        let list = client
            .list_containers(ListContainersRequest { filter: None })
            .await
            .map_err(|e| self.err(e))?
            .into_inner();
        let mut out = Vec::with_capacity(list.containers.len());
        for c in list.containers {
            if let Some(info) = inspect_with(&mut client, self.kind, &self.socket, &c.id).await? {
                out.push((short(&c.id).to_owned(), info));
            }
        }
        Ok(out)
    }

    /// What the runtime says about container `id` (its 12-character prefix is enough);
    /// `Ok(None)` when it does not know it. The caller bounds the time.
    pub async fn inspect(&mut self, id: &str) -> Result<Option<ContainerInfo>, LookupError> {
        let mut client = self.client().await?;
        inspect_with(&mut client, self.kind, &self.socket, id).await
    }
}

/// The text of an error and its sources (tonic's transport errors say little at the top).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn short(id: &str) -> &str {
    id.get(..SHORT_ID_LEN).unwrap_or(id)
}

/// The static name of a `container.type` already normalised by [`runtime_kind`].
fn runtime_kind_static(kind: &str) -> &'static str {
    match kind {
        "containerd" => "containerd",
        "cri-o" => "cri-o",
        _ => "cri",
    }
}

/// `containerd` / `cri-o` as Falco names them, from `VersionResponse.runtime_name`.
pub fn runtime_kind(runtime_name: &str) -> &'static str {
    match runtime_name {
        "containerd" => "containerd",
        "cri-o" | "crio" => "cri-o",
        _ => "cri",
    }
}

pub(crate) async fn inspect_with(
    client: &mut RuntimeServiceClient<Channel>,
    kind: &str,
    socket: &Path,
    id: &str,
) -> Result<Option<ContainerInfo>, LookupError> {
    let kind = runtime_kind_static(kind);
    let rpc = |e: tonic::Status| {
        LookupError::Rpc(
            socket.display().to_string(),
            e.code(),
            e.message().to_owned(),
        )
    };
    let status = match client
        .container_status(ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: true,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        // Not a container: perhaps a pod's sandbox (its pause process has a cgroup too).
        Err(e) if e.code() == tonic::Code::NotFound => {
            return match client
                .pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: id.to_owned(),
                    verbose: true,
                })
                .await
            {
                Ok(r) => Ok(sandbox_info(&r.into_inner(), kind)),
                Err(e) if e.code() == tonic::Code::NotFound => Ok(None),
                Err(e) => Err(rpc(e)),
            };
        }
        Err(e) => return Err(rpc(e)),
    };
    let mut info = container_info(&status, kind)
        .map_err(|why| LookupError::BadAnswer(socket.display().to_string(), why))?;
    let sandbox = sandbox_id(&status);
    if !sandbox.is_empty() {
        match client
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.clone(),
                verbose: true,
            })
            .await
        {
            Ok(r) => info.pod = pod_info(&r.into_inner(), &sandbox),
            // A container without its pod is still worth its own metadata.
            Err(e) if e.code() == tonic::Code::NotFound => {}
            Err(e) => return Err(rpc(e)),
        }
    }
    Ok(Some(info))
}

/// The verbose `info` JSON (`{"info": "{...}"}`), when present and readable.
fn verbose_info(info: &HashMap<String, String>) -> Option<serde_json::Value> {
    let text = info.get("info")?;
    match serde_json::from_str(text) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!("unreadable verbose CRI info: {e}");
            None
        }
    }
}

/// The pod sandbox of a container: the verbose `sandboxID` (containerd, CRI-O), or the
/// label the kubelet's runtimes set.
fn sandbox_id(status: &ContainerStatusResponse) -> String {
    if let Some(v) = verbose_info(&status.info)
        && let Some(id) = v["sandboxID"].as_str()
    {
        return id.to_owned();
    }
    status
        .status
        .as_ref()
        .and_then(|s| s.labels.get("io.kubernetes.sandbox.id"))
        .cloned()
        .unwrap_or_default()
}

/// A `ContainerStatus` answer as [`ContainerInfo`] (without the pod).
pub fn container_info(
    resp: &ContainerStatusResponse,
    kind: &'static str,
) -> Result<ContainerInfo, String> {
    let s = resp
        .status
        .as_ref()
        .ok_or_else(|| "ContainerStatus answer without a status".to_owned())?;
    if s.id.is_empty() {
        return Err("ContainerStatus answer without a container id".into());
    }
    let verbose = verbose_info(&resp.info);
    let v = verbose.as_ref().unwrap_or(&serde_json::Value::Null);
    let mut info = ContainerInfo {
        full_id: s.id.clone(),
        name: s
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| s.labels.get("io.kubernetes.container.name").cloned())
            .unwrap_or_default(),
        runtime: kind,
        // containerd: the container's CRI config; CRI-O: a top-level flag.
        privileged: v["config"]["linux"]["security_context"]["privileged"]
            .as_bool()
            .or_else(|| v["privileged"].as_bool())
            .unwrap_or(false),
        start_ts: u64::try_from(if s.started_at > 0 {
            s.started_at
        } else {
            s.created_at
        })
        .unwrap_or(0),
        ..ContainerInfo::default()
    };
    // The image as the pod spec names it; runtimes answer an image id (`sha256:...`) when
    // the image has no tag, so fall back to what the container was created with.
    let spec_image = s.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
    let annotations = &v["runtimeSpec"]["annotations"];
    let image = [
        Some(spec_image),
        v["config"]["image"]["image"].as_str(),
        annotations["io.kubernetes.cri.image-name"].as_str(),
        annotations["io.kubernetes.cri-o.ImageName"].as_str(),
    ]
    .into_iter()
    .flatten()
    .find(|i| !i.is_empty() && !i.starts_with("sha256:"))
    .unwrap_or(spec_image);
    if let Some((_, digest)) = s.image_ref.split_once('@') {
        info.image_digest = digest.to_owned();
    }
    let image_id = s.image_ref.strip_prefix("sha256:").unwrap_or("");
    info.image_id = image_id.chars().take(SHORT_ID_LEN).collect();
    info.set_image(image);
    info.set_mounts(
        s.mounts
            .iter()
            .map(|m| Mount {
                source: m.host_path.clone(),
                dest: m.container_path.clone(),
                mode: String::new(),
                rdwr: !m.readonly,
                propagation: match m.propagation {
                    1 => "rslave",
                    2 => "rshared",
                    _ => "private",
                }
                .to_owned(),
            })
            .collect(),
    );
    Ok(info)
}

/// A pod sandbox seen as a container (Falco reports the sandbox's pause process with its
/// pod): named after the pod, with the sandbox image and privileges from the verbose info.
pub fn sandbox_info(resp: &PodSandboxStatusResponse, kind: &'static str) -> Option<ContainerInfo> {
    let s = resp.status.as_ref()?;
    let v = verbose_info(&resp.info).unwrap_or(serde_json::Value::Null);
    let mut info = ContainerInfo {
        full_id: s.id.clone(),
        name: s
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        runtime: kind,
        privileged: v["config"]["linux"]["security_context"]["privileged"]
            .as_bool()
            .or_else(|| v["privileged"].as_bool())
            .unwrap_or(false),
        start_ts: u64::try_from(s.created_at).unwrap_or(0),
        pod: pod_info(resp, &s.id),
        ..ContainerInfo::default()
    };
    info.set_image(v["image"].as_str().unwrap_or(""));
    Some(info)
}

/// A `PodSandboxStatus` answer as [`PodInfo`]; `None` when it carries no pod metadata.
pub fn pod_info(resp: &PodSandboxStatusResponse, sandbox_id: &str) -> Option<PodInfo> {
    let s = resp.status.as_ref()?;
    let m = s.metadata.as_ref()?;
    let mut pod = PodInfo {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        sandbox_id: if s.id.is_empty() {
            sandbox_id.to_owned()
        } else {
            s.id.clone()
        },
        ip: s.network.as_ref().map(|n| n.ip.clone()).unwrap_or_default(),
        ..PodInfo::default()
    };
    pod.set_labels(
        s.labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
    Some(pod)
}

/// Bound `fut` by `timeout`; a timeout is [`LookupError::Timeout`].
pub async fn bounded<T>(
    socket: &Path,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, LookupError>>,
) -> Result<T, LookupError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(LookupError::Timeout(socket.display().to_string(), timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{
        ContainerMetadata, ContainerStatus, ImageSpec, Mount as CriMount, PodSandboxMetadata,
        PodSandboxNetworkStatus, PodSandboxStatus,
    };

    const ID: &str = "9b1f2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const SANDBOX: &str = "5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c";

    fn status(image: &str, image_ref: &str, info: &str) -> ContainerStatusResponse {
        ContainerStatusResponse {
            status: Some(ContainerStatus {
                id: ID.into(),
                metadata: Some(ContainerMetadata {
                    name: "nginx".into(),
                    attempt: 0,
                }),
                state: 1,
                created_at: 1_700_000_000_000_000_000,
                started_at: 1_700_000_001_000_000_000,
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                image_ref: image_ref.into(),
                mounts: vec![
                    CriMount {
                        container_path: "/host/etc".into(),
                        host_path: "/etc".into(),
                        readonly: true,
                        propagation: 1,
                        ..Default::default()
                    },
                    CriMount {
                        container_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                        host_path: "/var/lib/kubelet/pods/x/volumes/token".into(),
                        readonly: false,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            info: [("info".to_owned(), info.to_owned())].into_iter().collect(),
        }
    }

    /// The shape of containerd 1.6's verbose `info` (abridged): the CRI config it was
    /// created with, under `config`.
    const CONTAINERD_INFO: &str = r#"{"sandboxID":"5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c","pid":4242,"removing":false,"snapshotKey":"k","snapshotter":"overlayfs","runtimeType":"io.containerd.runc.v2","config":{"metadata":{"name":"nginx"},"image":{"image":"docker.io/library/nginx:1.25"},"linux":{"security_context":{"privileged":true,"namespace_options":{"pid":1}}}},"runtimeSpec":{"annotations":{"io.kubernetes.cri.image-name":"docker.io/library/nginx:1.25"}}}"#;

    /// The shape of CRI-O's verbose `info` (abridged): `privileged` at the top level and
    /// the image name in the runtime spec's annotations.
    const CRIO_INFO: &str = r#"{"sandboxID":"5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c","pid":4243,"privileged":true,"runtimeSpec":{"annotations":{"io.kubernetes.cri-o.ImageName":"quay.io/team/app:2.1","io.kubernetes.cri-o.Name":"k8s_app_web-0_shop_uid_0"}}}"#;

    #[test]
    fn containerd_status_becomes_container_info() {
        let resp = status(
            "docker.io/library/nginx:1.25",
            "docker.io/library/nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31",
            CONTAINERD_INFO,
        );
        let c = container_info(&resp, "containerd").unwrap();
        assert_eq!(c.full_id, ID);
        assert_eq!(c.name, "nginx");
        assert_eq!(c.runtime, "containerd");
        assert_eq!(c.image, "docker.io/library/nginx:1.25");
        assert_eq!(c.image_repository, "docker.io/library/nginx");
        assert_eq!(c.image_tag, "1.25");
        assert_eq!(
            c.image_digest,
            "sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31"
        );
        assert!(c.privileged);
        assert_eq!(c.start_ts, 1_700_000_001_000_000_000);
        assert_eq!(
            c.mounts_text,
            "/etc:/host/etc::false:rslave,/var/lib/kubelet/pods/x/volumes/token:/var/run/secrets/kubernetes.io/serviceaccount::true:private"
        );
        assert_eq!(sandbox_id(&resp), SANDBOX);
    }

    #[test]
    fn crio_status_becomes_container_info() {
        // CRI-O answers the image id when the image has no tag; the name comes from the
        // runtime spec's annotation.
        let image_id = "sha256:8f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a2918";
        let resp = status(image_id, image_id, CRIO_INFO);
        let c = container_info(&resp, runtime_kind("cri-o")).unwrap();
        assert_eq!(c.runtime, "cri-o");
        assert_eq!(c.image, "quay.io/team/app:2.1");
        assert_eq!(c.image_repository, "quay.io/team/app");
        assert_eq!(c.image_id, "8f7e6d5c4b3a");
        assert!(c.privileged);
        assert_eq!(sandbox_id(&resp), SANDBOX);
    }

    #[test]
    fn unreadable_answers_are_errors_or_partial_never_panics() {
        let mut resp = status("busybox", "", "{not json");
        // Garbage verbose info: the rest still counts.
        let c = container_info(&resp, "containerd").unwrap();
        assert_eq!(c.image, "busybox");
        assert!(!c.privileged);
        assert_eq!(sandbox_id(&resp), "");
        resp.status = None;
        assert!(container_info(&resp, "containerd").is_err());
        let empty = ContainerStatusResponse {
            status: Some(ContainerStatus::default()),
            info: HashMap::new(),
        };
        assert!(container_info(&empty, "containerd").is_err());
    }

    #[test]
    fn pod_sandbox_gives_the_pod_and_the_pause_container() {
        let resp = PodSandboxStatusResponse {
            status: Some(PodSandboxStatus {
                id: SANDBOX.into(),
                metadata: Some(PodSandboxMetadata {
                    name: "web-0".into(),
                    uid: "0f1e2d3c-aaaa-bbbb-cccc-0123456789ab".into(),
                    namespace: "shop".into(),
                    attempt: 0,
                }),
                created_at: 1_700_000_000_000_000_000,
                network: Some(PodSandboxNetworkStatus {
                    ip: "10.42.0.7".into(),
                    ..Default::default()
                }),
                labels: [
                    ("app".to_owned(), "web".to_owned()),
                    ("io.kubernetes.pod.name".to_owned(), "web-0".to_owned()),
                ]
                .into_iter()
                .collect(),
                ..Default::default()
            }),
            info: [(
                "info".to_owned(),
                r#"{"image":"registry.k8s.io/pause:3.9","config":{"linux":{"security_context":{"privileged":false}}}}"#.to_owned(),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let pod = pod_info(&resp, "").unwrap();
        assert_eq!(
            (pod.name.as_str(), pod.namespace.as_str(), pod.ip.as_str()),
            ("web-0", "shop", "10.42.0.7")
        );
        assert_eq!(pod.uid, "0f1e2d3c-aaaa-bbbb-cccc-0123456789ab");
        assert_eq!(pod.labels_text, "[app:web, io.kubernetes.pod.name:web-0]");
        assert_eq!(pod.label("app"), Some("web"));
        let pause = sandbox_info(&resp, "containerd").unwrap();
        assert_eq!(pause.name, "web-0");
        assert_eq!(pause.image_repository, "registry.k8s.io/pause");
        assert_eq!(
            pause.pod.as_ref().map(|p| p.sandbox_id.as_str()),
            Some(SANDBOX)
        );
        assert!(pod_info(&PodSandboxStatusResponse::default(), "").is_none());
    }
}
