//! The real binary: serve, SIGHUP template reload, SIGTERM drains the queues and exits 0.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{read_lines, small_tmpfs, temp_dir};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_healthy(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("router exited early: {status}");
        }
        assert!(Instant::now() < deadline, "router did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn post(port: u16, path: &str, body: String) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}{path}"))
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

fn wait_lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = read_lines(path);
        if l.len() >= n {
            return l;
        }
        assert!(Instant::now() < deadline, "{} lines of {n}", l.len());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_reloads_on_sighup_and_drains_on_sigterm() {
    let dir = temp_dir("process");
    let tpl = dir.join("templates");
    std::fs::create_dir_all(&tpl).unwrap();
    std::fs::write(
        tpl.join("line.hbs"),
        "{\"v\":1,\"rule\":\"{{alert.rule}}\"}",
    )
    .unwrap();
    let port = free_port();
    let file = dir.join("out/alerts.jsonl");
    let cfg = dir.join("router.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\ntemplates_dir: {}\noutputs:\n  - {{name: a, type: file, path: {}, template: line.hbs, fsync: always}}\n",
            tpl.display(),
            file.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aerie-router"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_healthy(port, &mut child);
    let alert = |rule: &str| {
        format!(
            r#"{{"output":"x","priority":"Warning","rule":"{rule}","time":"2023-05-25T13:44:05Z"}}"#
        )
    };
    assert_eq!(post(port, "/", alert("before")), 200);
    assert_eq!(wait_lines(&file, 1)[0]["v"], 1);

    std::fs::write(
        tpl.join("line.hbs"),
        "{\"v\":2,\"rule\":\"{{alert.rule}}\"}",
    )
    .unwrap();
    signal(&child, "HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 1;
    loop {
        assert_eq!(post(port, "/", alert("after")), 200);
        n += 1;
        let lines = wait_lines(&file, n);
        if lines[n - 1]["v"] == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the template"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A batch, then SIGTERM at once: everything acknowledged is written before exit.
    let batch: Vec<String> = (0..500).map(|i| alert(&format!("b{i}"))).collect();
    assert_eq!(post(port, "/v1/alerts", batch.join("\n")), 200);
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let lines = read_lines(&file);
    assert_eq!(lines.len(), n + 500);
    assert_eq!(lines.last().unwrap()["rule"], "b499");
}

/// A plain HTTP/1.1 server that answers 200 to every request and hands over each body.
fn ok_server() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                loop {
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
                    let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    (port, rx)
}

/// An output that cannot drain (its server takes the request and never answers) next to one
/// that drains at once must not turn SIGTERM into a panic (`JoinHandle polled after
/// completion`): the router waits out the drain deadline, exits 0, and the alert stays on disk
/// for the next start.
#[test]
fn sigterm_with_an_output_that_cannot_drain_exits_0_and_keeps_the_alert() {
    let dir = temp_dir("process-stuck");
    let stuck = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stuck_port = stuck.local_addr().unwrap().port();
    let (accepted_tx, accepted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in stuck.incoming().flatten() {
            held.push(conn); // read nothing, answer nothing
            let _ = accepted_tx.send(());
        }
    });
    let port = free_port();
    let cfg = dir.join("router.yaml");
    let write_cfg = |hook_port: u16| {
        std::fs::write(
            &cfg,
            format!(
                "listen: 127.0.0.1:{port}\nqueue: {{dir: {}}}\noutputs:\n  - {{name: archive, type: file, path: {}}}\n  - {{name: hook, type: webhook, url: \"http://127.0.0.1:{hook_port}/\", timeout: 120s}}\n",
                dir.join("queue").display(),
                dir.join("alerts.jsonl").display()
            ),
        )
        .unwrap()
    };
    write_cfg(stuck_port);
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_aerie-router"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    wait_healthy(port, &mut child);
    let alert =
        r#"{"output":"x","priority":"Warning","rule":"stuck","time":"2023-05-25T13:44:05Z"}"#;
    assert_eq!(post(port, "/", alert.to_owned()), 200);
    accepted
        .recv_timeout(Duration::from_secs(30))
        .expect("the webhook request reached the stuck server");
    let asked = Instant::now();
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        asked.elapsed() < Duration::from_secs(60),
        "took {:?}",
        asked.elapsed()
    );

    // The next start delivers it.
    let (ok_port, bodies) = ok_server();
    write_cfg(ok_port);
    let mut child = spawn();
    wait_healthy(port, &mut child);
    let body = bodies
        .recv_timeout(Duration::from_secs(30))
        .expect("the alert left on disk is delivered after a restart");
    assert!(body.contains("\"stuck\""), "{body}");
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
}

/// A file output whose flush fails (a full disk) must not acknowledge what it had not written:
/// after SIGKILL and a restart with space again, every accepted alert is in the file, on lines
/// that parse. Needs root (it mounts a tmpfs); fails instead of skipping under CI=true.
#[test]
fn a_failed_file_flush_acknowledges_nothing_and_the_restart_writes_it_all() {
    use std::io::{BufRead, BufReader};
    let dir = temp_dir("process-flush-enospc");
    let out_dir = dir.join("out");
    let Some(_tmpfs) = small_tmpfs(&out_dir, "256k", "the full-disk file output test") else {
        return;
    };
    // Leave a few KiB: the first flush of the batch below stops partway.
    let filler = out_dir.join("filler");
    std::fs::write(&filler, vec![0u8; 248 << 10]).unwrap();

    let port = free_port();
    let file = out_dir.join("alerts.jsonl");
    let cfg = dir.join("router.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\nqueue: {{dir: {}}}\noutputs:\n  - {{name: archive, type: file, path: {}, fsync: always}}\n",
            dir.join("queue").display(),
            file.display()
        ),
    )
    .unwrap();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_aerie-router"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (failed_tx, failed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("flush failed") {
                let _ = failed_tx.send(());
            }
        }
    });
    wait_healthy(port, &mut child);
    const N: usize = 60;
    let pad = "p".repeat(300);
    let batch: Vec<String> = (0..N)
        .map(|i| {
            format!(
                r#"{{"output":"{pad}","priority":"Warning","rule":"r{i}","time":"2023-05-25T13:44:05Z"}}"#
            )
        })
        .collect();
    assert_eq!(post(port, "/v1/alerts", batch.join("\n")), 200);
    failed
        .recv_timeout(Duration::from_secs(30))
        .expect("the file output's flush failed on the full disk");
    // Give a wrongly early ack time to reach the spool's cursor (it syncs every 200 ms).
    std::thread::sleep(Duration::from_millis(600));
    let _ = child.kill();
    let _ = child.wait();

    std::fs::remove_file(&filler).unwrap();
    let mut child = spawn();
    wait_healthy(port, &mut child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let rules: std::collections::HashSet<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["rule"].as_str().map(str::to_owned))
            .collect();
        let parsed = text
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok());
        if rules.len() == N && parsed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart: {} of {N} alerts in the file, every line parses: {parsed}",
            rules.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
}

/// Logs written to a pipe or a file carry no terminal colour codes, and each line starts with
/// its timestamp (they were coloured whatever stderr was).
#[test]
fn logs_to_a_pipe_are_plain_timestamped_lines() {
    let dir = temp_dir("plain-logs");
    let port = free_port();
    let cfg = dir.join("router.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen: 127.0.0.1:{port}\noutputs:\n  - {{name: a, type: file, path: {}}}\n",
            dir.join("alerts.jsonl").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aerie-router"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_healthy(port, &mut child);
    signal(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the router logged nothing");
    assert!(!log.contains('\x1b'), "colour codes in a piped log:\n{log}");
    for l in lines
        .iter()
        .filter(|l| l.contains(" INFO ") || l.contains(" WARN "))
    {
        let b = l.as_bytes();
        assert!(
            b.len() > 20 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T',
            "not a timestamped line: {l}"
        );
    }
}
