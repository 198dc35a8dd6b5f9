//! The Docker Engine API on its unix socket (`GET /containers/{id}/json`), which docker and
//! podman (`podman system service`) both serve.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::LookupError;
use super::info::{ContainerInfo, Mount};

/// Largest inspect answer read.
const MAX_RESPONSE: u64 = 4 << 20;

/// Ask the Docker-API runtime at `socket` about container `id` (short or full). `Ok(None)`:
/// the runtime does not know it. The caller bounds the time.
pub async fn inspect(
    socket: &Path,
    runtime: &'static str,
    id: &str,
) -> Result<Option<ContainerInfo>, LookupError> {
    let io = |e: std::io::Error| LookupError::Io(socket.display().to_string(), e);
    let mut s = UnixStream::connect(socket).await.map_err(io)?;
    // HTTP/1.0: the runtime closes the connection after the answer, so reading to EOF
    // delimits the body without chunked decoding.
    let req = format!("GET /containers/{id}/json HTTP/1.0\r\nHost: docker\r\n\r\n");
    s.write_all(req.as_bytes()).await.map_err(io)?;
    let mut buf = Vec::with_capacity(8192);
    s.take(MAX_RESPONSE)
        .read_to_end(&mut buf)
        .await
        .map_err(io)?;
    parse_inspect_response(&buf, runtime)
        .map_err(|why| LookupError::BadAnswer(socket.display().to_string(), why))
}

/// Parse an HTTP response carrying Docker's container inspect JSON; `Ok(None)` for a 404.
pub fn parse_inspect_response(
    resp: &[u8],
    runtime: &'static str,
) -> Result<Option<ContainerInfo>, String> {
    let text = std::str::from_utf8(resp).map_err(|_| "response is not UTF-8".to_owned())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no HTTP header".to_owned())?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if !head.starts_with("HTTP/1.") {
        return Err("not an HTTP response".into());
    }
    match status {
        "200" => {}
        "404" => return Ok(None),
        s => return Err(format!("HTTP status {s}")),
    }
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("inspect JSON: {e}"))?;
    let mut info = ContainerInfo {
        full_id: v["Id"].as_str().unwrap_or("").to_owned(),
        name: v["Name"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_owned(),
        runtime,
        privileged: v["HostConfig"]["Privileged"].as_bool().unwrap_or(false),
        image_id: v["Image"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect(),
        ..ContainerInfo::default()
    };
    info.set_image(v["Config"]["Image"].as_str().unwrap_or(""));
    let mounts = v["Mounts"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| Mount {
                    source: m["Source"].as_str().unwrap_or("").to_owned(),
                    dest: m["Destination"].as_str().unwrap_or("").to_owned(),
                    mode: m["Mode"].as_str().unwrap_or("").to_owned(),
                    rdwr: m["RW"].as_bool().unwrap_or(false),
                    propagation: m["Propagation"].as_str().unwrap_or("").to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    info.set_mounts(mounts);
    Ok(Some(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_responses_parse_or_are_refused() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"Id\":\"3f2a\",\"Name\":\"/web\",\"Config\":{\"Image\":\"nginx:1.25\"},\"HostConfig\":{\"Privileged\":true},\"Mounts\":[{\"Source\":\"/etc\",\"Destination\":\"/h\",\"Mode\":\"ro\",\"RW\":false,\"Propagation\":\"rprivate\"}]}";
        let info = parse_inspect_response(ok, "docker").unwrap().unwrap();
        assert_eq!(info.name, "web");
        assert_eq!(
            (info.image_repository.as_str(), info.image_tag.as_str()),
            ("nginx", "1.25")
        );
        assert!(info.privileged);
        assert_eq!(info.mounts_text, "/etc:/h:ro:false:rprivate");
        assert_eq!(
            parse_inspect_response(b"HTTP/1.0 404 Not Found\r\n\r\n{}", "docker"),
            Ok(None)
        );
        assert!(parse_inspect_response(b"garbage", "docker").is_err());
        assert!(parse_inspect_response(b"HTTP/1.0 200 OK\r\n\r\n{nope", "docker").is_err());
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
        let info = inspect(&sock, "docker", "3f2a9c1b7d4e")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.name, "db");
        assert_eq!(info.image, "postgres:16");
        assert_eq!(info.runtime, "docker");
        assert!(!info.privileged);
        // No runtime there: an error naming the socket, quickly.
        let err = inspect(&dir.join("absent.sock"), "docker", "x")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("absent.sock"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
