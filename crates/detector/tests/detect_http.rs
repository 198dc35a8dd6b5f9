//! End to end over HTTP: the detector, attached to the kernel, POSTs a Falco JSON alert for a
//! real action to an http_output receiver on loopback, which decodes it with the router's
//! wire-format decoder. Needs root (skips with a notice; fails under CI=true).

mod detect_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use detect_support::*;

/// Accept connections and send each POST body to `tx`, answering 200 (keep-alive).
fn receiver(listener: TcpListener, tx: mpsc::Sender<(String, String)>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { return };
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut w = conn.try_clone().unwrap();
            let mut r = BufReader::new(conn);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let request = line.trim_end().to_owned();
                let mut len = 0;
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line.trim_end().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let _ = tx.send((request, String::from_utf8_lossy(&body).into_owned()));
                if w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

#[test]
fn a_real_action_reaches_an_http_receiver_as_a_falco_alert() {
    if !privileged() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || receiver(listener, tx));

    let dir = scratch("http");
    let rules = repo_root().join("config/rules/aerie_rules.yaml");
    let d = Detector::start_with(&[rules], &dir, &[url]);
    let mut f = Failures::default();

    let missing = dir.join("missing");
    run(Command::new("cat").arg("/etc/shadow").arg(&missing));
    let cmd = format!("cat /etc/shadow {}", missing.display());
    let end = std::time::Instant::now() + Duration::from_secs(15);
    let mut found = None;
    while found.is_none() && std::time::Instant::now() < end {
        if let Ok((request, body)) = rx.recv_timeout(Duration::from_millis(200)) {
            f.check(
                request.starts_with("POST / "),
                format!("request line {request:?}"),
            );
            match aerie_alert::decode_alert(body.as_bytes()) {
                Ok(a) if a.field_str("proc.cmdline") == Some(&cmd) => found = Some(a),
                Ok(_) => {}
                Err(e) => f.check(false, format!("undecodable alert body {body:?}: {e}")),
            }
        }
    }
    f.check(found.is_some(), "no alert POSTed for cat /etc/shadow");
    if let Some(a) = found {
        f.check(
            a.rule == "Shadow or Sudoers File Read by Unexpected Program",
            format!("rule: {a:?}"),
        );
        f.check(a.source == "syscall", format!("source: {a:?}"));
        f.check(!a.hostname.is_empty(), format!("hostname: {a:?}"));
    }
    f.finish(d);
    let _ = std::fs::remove_dir_all(&dir);
}
