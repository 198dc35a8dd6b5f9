//! A real containerd for tests: its own config, root, state and socket in a scratch
//! directory; a busybox-static OCI image built here and imported with `ctr`; pods and
//! containers created over CRI exactly as the kubelet does (RunPodSandbox, CreateContainer,
//! StartContainer, ExecSync), with host networking so that no CNI is needed. Also starts the
//! real `aerie-detector` with a config file and the real `aerie-router` with a file output.
//! Needs root, containerd, runc and busybox-static (skips with a notice; fails under CI=true).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aerie_alert::Alert;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// The image every pod (and the sandbox) runs.
pub const IMAGE: &str = "docker.io/aerie/busybox:test";
pub const IMAGE_REPOSITORY: &str = "docker.io/aerie/busybox";

fn require(why: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}, and CI=true requires this test to run");
    }
    eprintln!("notice: skipping: {why}");
    false
}

/// Whether this machine can run these tests; prints the skip notice when not.
pub fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return require("not running as root");
    }
    for tool in ["containerd", "ctr", "runc", "tar", "sha256sum"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()));
        if !found {
            return require(&format!("{tool} is not installed (scripts/bootstrap)"));
        }
    }
    if !Path::new("/bin/busybox").exists() {
        return require("/bin/busybox is missing (busybox-static)");
    }
    true
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh scratch directory (short: unix socket paths are limited to 108 bytes).
pub fn scratch(tag: &str) -> PathBuf {
    let d = PathBuf::from(format!("/tmp/aerie-cri-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sha256_file(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", p.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Move `file` into the layout's blobs; (digest hex, size).
fn add_blob(layout: &Path, file: &Path) -> (String, u64) {
    let digest = sha256_file(file);
    let size = std::fs::metadata(file).unwrap().len();
    std::fs::rename(file, layout.join("blobs/sha256").join(&digest)).unwrap();
    (digest, size)
}

/// An OCI image archive of busybox-static with an `/etc/shadow`, named [`IMAGE`].
pub fn build_image(dir: &Path) -> PathBuf {
    let root = dir.join("image-rootfs");
    let layout = dir.join("image-layout");
    for d in ["bin", "etc", "proc", "dev", "sys", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "sleep", "ls", "echo", "id", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    let layer = dir.join("layer.tar");
    let ok = Command::new("tar")
        .args(["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar of the image layer");
    let (layer_digest, layer_size) = add_blob(&layout, &layer);
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sleep", "3600"]},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]}
        })
        .to_string(),
    )
    .unwrap();
    let (config_digest, config_size) = add_blob(&layout, &config);
    let manifest = dir.join("manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{config_digest}"), "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": format!("sha256:{layer_digest}"), "size": layer_size}]
        })
        .to_string(),
    )
    .unwrap();
    let (manifest_digest, manifest_size) = add_blob(&layout, &manifest);
    std::fs::write(
        layout.join("index.json"),
        serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": format!("sha256:{manifest_digest}"), "size": manifest_size,
                           "annotations": {"io.containerd.image.name": IMAGE,
                                           "org.opencontainers.image.ref.name": "test"}}]
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        "{\"imageLayoutVersion\":\"1.0.0\"}",
    )
    .unwrap();
    let archive = dir.join("image.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar of the OCI layout");
    archive
}

/// The snapshotter that works here: overlayfs when an overlay mount succeeds, else native.
fn snapshotter(dir: &Path) -> &'static str {
    let t = dir.join("ovl-probe");
    for d in ["l", "u", "w", "m"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        t.join("l").display(),
        t.join("u").display(),
        t.join("w").display()
    );
    let ok = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(t.join("m"))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        let _ = Command::new("umount").arg(t.join("m")).status();
    }
    let _ = std::fs::remove_dir_all(&t);
    if ok { "overlayfs" } else { "native" }
}

/// A containerd of our own.
pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

impl Containerd {
    /// Start containerd and import the test image.
    pub fn start(dir: &Path) -> Containerd {
        let socket = dir.join("containerd.sock");
        let config = dir.join("containerd.toml");
        let snap = snapshotter(dir);
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = "{sock}.debug"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snap}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
"#,
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = socket.display(),
            ),
        )
        .unwrap();
        let mut c = Containerd {
            dir: dir.to_path_buf(),
            socket,
            config,
            child: None,
        };
        c.restart();
        let image = build_image(dir);
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&c.socket)
            .args(["-n", "k8s.io", "images", "import", "--snapshotter", snap])
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ctr images import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        c
    }

    /// (Re)start the containerd process on the same root and state (containers survive:
    /// their shims keep running).
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("containerd.log"))
            .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&self.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning containerd");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(60);
        while !self.socket.exists() {
            assert!(
                Instant::now() < end,
                "containerd did not create its socket:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the containerd process (SIGTERM, then SIGKILL); its shims and containers stay.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > end {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = std::fs::remove_file(&self.socket);
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Containers first (their shims outlive containerd), then containerd itself.
        if self.child.is_some() {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "for t in $(ctr -a {s} -n k8s.io tasks ls -q); do ctr -a {s} -n k8s.io tasks kill -s KILL $t; done; sleep 1; \
                     for t in $(ctr -a {s} -n k8s.io tasks ls -q); do ctr -a {s} -n k8s.io tasks delete -f $t; done",
                    s = self.socket.display()
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        self.stop();
        // Overlay and shm mounts below our root.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "grep -o ' {d}[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l",
                d = self.dir.display()
            ))
            .status();
    }
}

/// A pod to run: kubelet's RunPodSandbox fields plus one container.
#[derive(Clone, Default)]
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: Vec<(String, String)>,
    pub privileged: bool,
    pub tty: bool,
    pub command: Vec<String>,
    /// (host path, container path, read-only)
    pub mounts: Vec<(String, String, bool)>,
}

impl PodSpec {
    pub fn new(name: &str, namespace: &str) -> PodSpec {
        PodSpec {
            name: name.into(),
            namespace: namespace.into(),
            uid: format!(
                "{:08x}-0000-4000-8000-{:012x}",
                std::process::id(),
                name.len() as u64 * 7919 + name.bytes().map(u64::from).sum::<u64>()
            ),
            command: vec!["/bin/sleep".into(), "3600".into()],
            ..PodSpec::default()
        }
    }
}

/// A running pod.
pub struct Pod {
    pub sandbox_id: String,
    pub container_id: String,
}

/// A CRI client over containerd's socket, as the kubelet uses it.
pub struct Kubelet {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
    logs: PathBuf,
}

impl Kubelet {
    pub fn connect(c: &Containerd) -> Kubelet {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let path = c.socket.clone();
        let channel = rt
            .block_on(
                Endpoint::try_from("http://[::]:50051")
                    .unwrap()
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    })),
            )
            .expect("connecting to containerd's CRI");
        let logs = c.dir.join("pod-logs");
        std::fs::create_dir_all(&logs).unwrap();
        Kubelet {
            rt,
            client: RuntimeServiceClient::new(channel),
            logs,
        }
    }

    fn sandbox_config(&self, spec: &PodSpec) -> cri::PodSandboxConfig {
        let mut labels: HashMap<String, String> = spec.labels.iter().cloned().collect();
        // What the kubelet adds to every sandbox.
        labels.insert("io.kubernetes.pod.name".into(), spec.name.clone());
        labels.insert("io.kubernetes.pod.namespace".into(), spec.namespace.clone());
        labels.insert("io.kubernetes.pod.uid".into(), spec.uid.clone());
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: spec.name.clone(),
                uid: spec.uid.clone(),
                namespace: spec.namespace.clone(),
                attempt: 0,
            }),
            log_directory: self.logs.join(&spec.uid).display().to_string(),
            labels,
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("/kubepods/besteffort/pod{}", spec.uid),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    privileged: spec.privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox, CreateContainer, StartContainer.
    pub fn run_pod(&mut self, spec: &PodSpec) -> Pod {
        let sandbox_config = self.sandbox_config(spec);
        let mut client = self.client.clone();
        let container_name = spec.name.clone();
        let spec = spec.clone();
        self.rt.block_on(async move {
            let sandbox_id = client
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(sandbox_config.clone()),
                    runtime_handler: String::new(),
                })
                .await
                .expect("RunPodSandbox")
                .into_inner()
                .pod_sandbox_id;
            let config = cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: container_name.clone(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: IMAGE.into(),
                    ..Default::default()
                }),
                command: spec.command.clone(),
                tty: spec.tty,
                log_path: format!("{container_name}.log"),
                mounts: spec
                    .mounts
                    .iter()
                    .map(|(host, ctr, ro)| cri::Mount {
                        host_path: host.clone(),
                        container_path: ctr.clone(),
                        readonly: *ro,
                        ..Default::default()
                    })
                    .collect(),
                linux: Some(cri::LinuxContainerConfig {
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        privileged: spec.privileged,
                        namespace_options: Some(cri::NamespaceOption {
                            network: cri::NamespaceMode::Node as i32,
                            pid: cri::NamespaceMode::Container as i32,
                            ipc: cri::NamespaceMode::Pod as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                labels: [
                    (
                        "io.kubernetes.container.name".to_owned(),
                        container_name.clone(),
                    ),
                    ("io.kubernetes.pod.name".to_owned(), spec.name.clone()),
                    (
                        "io.kubernetes.pod.namespace".to_owned(),
                        spec.namespace.clone(),
                    ),
                ]
                .into_iter()
                .collect(),
                ..Default::default()
            };
            let container_id = client
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: sandbox_id.clone(),
                    config: Some(config),
                    sandbox_config: Some(sandbox_config),
                })
                .await
                .expect("CreateContainer")
                .into_inner()
                .container_id;
            client
                .start_container(cri::StartContainerRequest {
                    container_id: container_id.clone(),
                })
                .await
                .expect("StartContainer");
            Pod {
                sandbox_id,
                container_id,
            }
        })
    }

    /// ExecSync: run `cmd` in the container; (exit code, stdout).
    pub fn exec(&mut self, container_id: &str, cmd: &[&str]) -> (i32, String) {
        let mut client = self.client.clone();
        let req = cri::ExecSyncRequest {
            container_id: container_id.into(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            timeout: 30,
        };
        self.rt.block_on(async move {
            let r = client.exec_sync(req).await.expect("ExecSync").into_inner();
            (r.exit_code, String::from_utf8_lossy(&r.stdout).into_owned())
        })
    }

    /// Host pid of the container's first process (from the verbose status).
    pub fn pid(&mut self, container_id: &str) -> u32 {
        let mut client = self.client.clone();
        let id = container_id.to_owned();
        self.rt.block_on(async move {
            let r = client
                .container_status(cri::ContainerStatusRequest {
                    container_id: id,
                    verbose: true,
                })
                .await
                .expect("ContainerStatus")
                .into_inner();
            let info: serde_json::Value =
                serde_json::from_str(r.info.get("info").map_or("{}", |s| s.as_str())).unwrap();
            info["pid"].as_u64().unwrap_or(0) as u32
        })
    }

    /// StopPodSandbox + RemovePodSandbox (its containers go with it).
    pub fn remove_pod(&mut self, pod: &Pod) {
        let mut client = self.client.clone();
        let id = pod.sandbox_id.clone();
        self.rt.block_on(async move {
            let _ = client
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await;
            let _ = client
                .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                .await;
        });
    }
}

/// A running process whose stderr is kept.
pub struct Proc {
    child: Child,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Spawn `cmd`; with `ready`, wait up to 90 s for a stderr line containing it.
    pub fn spawn(mut cmd: Command, ready: Option<&'static str>) -> Proc {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let keep = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if ready.is_some_and(|r| line.contains(r)) {
                    let _ = tx.send(());
                }
                keep.lock().unwrap().push(line);
            }
        });
        let ok = ready.is_none() || rx.recv_timeout(Duration::from_secs(90)).is_ok();
        let p = Proc { child, stderr };
        assert!(ok, "not ready ({ready:?}):\n{}", p.log());
        p
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// SIGINT, then wait; whether it exited successfully.
    pub fn stop(mut self) -> bool {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Start `aerie-detector run` with `rules`, metadata from `cri_socket` only, alerts to
/// `<dir>/alerts.jsonl` plus `outputs`.
pub fn detector(dir: &Path, rules: &[PathBuf], cri_socket: &Path, outputs: &[String]) -> Proc {
    let config = dir.join("detector.yaml");
    let mut outs = vec![format!("file:{}", dir.join("alerts.jsonl").display())];
    outs.extend(outputs.iter().cloned());
    let rules_yaml: Vec<String> = rules
        .iter()
        .map(|r| format!("  - {}", r.display()))
        .collect();
    let outs_yaml: Vec<String> = outs.iter().map(|o| format!("  - {o}")).collect();
    std::fs::write(
        &config,
        format!(
            "rules:\n{}\noutputs:\n{}\nmetrics:\n  listen: 127.0.0.1:0\nhttp_output:\n  spill_dir: {}\ncontainer:\n  cri_sockets: [{}]\n  docker_sockets: []\n  metadata_timeout_ms: 2000\n",
            rules_yaml.join("\n"),
            outs_yaml.join("\n"),
            dir.join("spool").display(),
            cri_socket.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aerie-detector"));
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .env("AERIE_LOG", "info");
    Proc::spawn(cmd, Some("processes read from /proc"))
}

/// The `aerie-router` binary next to the detector's (built by the workspace build); built
/// here when absent.
fn router_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_aerie-detector"))
        .parent()
        .unwrap()
        .join("aerie-router");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "aerie-router", "--bin", "aerie-router"])
            .current_dir(repo_root())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "building aerie-router");
    }
    bin
}

/// Start `aerie-router serve` with one file output at `<dir>/router-alerts.jsonl`; returns
/// it and its ingest URL.
pub fn router(dir: &Path) -> (Proc, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("router.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\ntemplates_dir: {}\noutputs:\n  - name: archive\n    type: file\n    path: {}\n    fsync: always\nroutes:\n  - name: all\n    outputs: [archive]\n",
            repo_root().join("templates").display(),
            dir.join("router-alerts.jsonl").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(router_bin());
    cmd.arg("serve").arg("--config").arg(&config);
    let p = Proc::spawn(cmd, None);
    let end = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < end,
            "aerie-router did not listen:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (p, format!("http://127.0.0.1:{port}/"))
}

/// Alerts in a JSON-lines file.
pub fn alerts_in(file: &Path) -> Vec<Alert> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Wait up to `timeout` for an alert in `file` that `pred` accepts.
pub fn wait_alert(file: &Path, timeout: Duration, pred: impl Fn(&Alert) -> bool) -> Option<Alert> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(a) = alerts_in(file).into_iter().find(|a| pred(a)) {
            return Some(a);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An output field's text (`None` when absent or null).
pub fn field<'a>(a: &'a Alert, name: &str) -> Option<&'a str> {
    a.output_fields.get(name).and_then(|v| v.as_str())
}
