//! Container metadata (name, image, privileged) from a container runtime's API, when one is
//! reachable. Lookups run off the event path; until an answer arrives (or when no runtime
//! answers) the fields are absent and print `<NA>`, as in Falco.
//!
//! Supported: the Docker Engine API on its unix socket (`GET /containers/{id}/json`), which
//! docker and podman (`podman system service`) both serve.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// What a runtime told us about one container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerInfo {
    pub name: String,
    /// The image as configured (`nginx:1.25`, `registry/x/app@sha256:...`).
    pub image: String,
    pub image_repository: String,
    pub image_tag: String,
    pub privileged: bool,
}

/// Known containers by 12-character id, plus the ids whose lookup is under way.
#[derive(Debug, Default)]
pub struct ContainerDb {
    known: HashMap<String, ContainerInfo>,
    asked: HashSet<String>,
}

impl ContainerDb {
    pub fn get(&self, id: &str) -> Option<&ContainerInfo> {
        self.known.get(id)
    }

    pub fn insert(&mut self, id: String, info: ContainerInfo) {
        self.known.insert(id, info);
    }

    /// Whether `id` should be looked up now (first sight); marks it as asked.
    pub fn should_ask(&mut self, id: &str) -> bool {
        if id == super::container::HOST_ID || self.known.contains_key(id) || self.asked.contains(id)
        {
            return false;
        }
        // Bounded: forget old questions rather than grow without limit.
        if self.asked.len() > 65_536 {
            self.asked.clear();
        }
        self.asked.insert(id.to_owned());
        true
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

/// Runtime API sockets tried, in order.
pub const DEFAULT_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/podman/podman.sock"];

/// The first socket of `candidates` that exists.
pub fn find_socket(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Ask the Docker-API runtime at `socket` about container `id` (short or full).
pub async fn docker_inspect(socket: &Path, id: &str) -> Option<ContainerInfo> {
    let fut = async {
        let mut s = UnixStream::connect(socket).await.ok()?;
        // HTTP/1.0: the runtime closes the connection after the answer, so reading to EOF
        // delimits the body without chunked decoding.
        let req = format!("GET /containers/{id}/json HTTP/1.0\r\nHost: docker\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::with_capacity(8192);
        s.take(4 << 20).read_to_end(&mut buf).await.ok()?;
        parse_inspect_response(&buf)
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .ok()?
}

/// Parse an HTTP response carrying Docker's container inspect JSON.
pub fn parse_inspect_response(resp: &[u8]) -> Option<ContainerInfo> {
    let text = std::str::from_utf8(resp).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1)? != "200" {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let name = v["Name"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_owned();
    let image = v["Config"]["Image"].as_str().unwrap_or("").to_owned();
    let (image_repository, image_tag) = split_image(&image);
    Some(ContainerInfo {
        name,
        image_repository: image_repository.to_owned(),
        image_tag: image_tag.to_owned(),
        image,
        privileged: v["HostConfig"]["Privileged"].as_bool().unwrap_or(false),
    })
}

/// `registry:5000/team/app:1.2@sha256:..` → (`registry:5000/team/app`, `1.2`).
fn split_image(image: &str) -> (&str, &str) {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[last_slash..].rfind(':') {
        Some(i) => (
            &no_digest[..last_slash + i],
            &no_digest[last_slash + i + 1..],
        ),
        None => (no_digest, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_split_into_repository_and_tag() {
        assert_eq!(split_image("nginx:1.25"), ("nginx", "1.25"));
        assert_eq!(
            split_image("registry:5000/team/app:2@sha256:abc"),
            ("registry:5000/team/app", "2")
        );
        assert_eq!(split_image("registry:5000/app"), ("registry:5000/app", ""));
        assert_eq!(split_image(""), ("", ""));
    }

    #[test]
    fn inspect_responses_parse_or_are_refused() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"Name\":\"/web\",\"Config\":{\"Image\":\"nginx:1.25\"},\"HostConfig\":{\"Privileged\":true}}";
        let info = parse_inspect_response(ok).unwrap();
        assert_eq!(info.name, "web");
        assert_eq!(
            (info.image_repository.as_str(), info.image_tag.as_str()),
            ("nginx", "1.25")
        );
        assert!(info.privileged);
        assert!(parse_inspect_response(b"HTTP/1.0 404 Not Found\r\n\r\n{}").is_none());
        assert!(parse_inspect_response(b"garbage").is_none());
    }

    #[test]
    fn each_container_is_asked_once() {
        let mut db = ContainerDb::default();
        assert!(db.should_ask("3f2a9c1b7d4e"));
        assert!(!db.should_ask("3f2a9c1b7d4e"));
        assert!(!db.should_ask("host"));
    }

    #[tokio::test]
    async fn asks_a_docker_api_socket() {
        let dir = std::env::temp_dir().join(format!("aerie-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("docker.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 1024];
            let n = c.read(&mut req).await.unwrap();
            let line = String::from_utf8_lossy(&req[..n]).into_owned();
            let body = if line.starts_with("GET /containers/3f2a9c1b7d4e/json ") {
                "HTTP/1.0 200 OK\r\n\r\n{\"Name\":\"/db\",\"Config\":{\"Image\":\"postgres:16\"},\"HostConfig\":{\"Privileged\":false}}"
            } else {
                "HTTP/1.0 404 Not Found\r\n\r\n{}"
            };
            c.write_all(body.as_bytes()).await.unwrap();
        });
        let info = docker_inspect(&sock, "3f2a9c1b7d4e").await.unwrap();
        assert_eq!(info.name, "db");
        assert_eq!(info.image, "postgres:16");
        assert!(!info.privileged);
        // No runtime there: nothing, quickly.
        assert!(
            docker_inspect(&dir.join("absent.sock"), "x")
                .await
                .is_none()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
