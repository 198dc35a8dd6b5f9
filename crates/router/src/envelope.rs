//! The envelope of an accepted alert: the decoded alert and what ingest knows about it, shared
//! (behind an `Arc`) by every output it goes to.

use std::time::Instant;

use aerie_alert::Alert;

/// An accepted alert, shared by every output it goes to.
#[derive(Debug)]
pub struct Envelope {
    pub alert: Alert,
    /// `POST /test`: skips dedup and rate limits.
    pub test: bool,
    pub received: Instant,
}

/// The alert from Falco's documentation, used to try templates at load time.
pub fn sample_alert() -> Alert {
    const DOC: &str = r#"{"hostname":"falco-xczjd","output":"13:44:05.478445995: Critical A shell was spawned in a container with an attached terminal (user=root user_loginuid=-1 k8s.ns=default k8s.pod=kubecon container=ee97d9c4186f shell=sh parent=runc cmdline=sh -c clear; (bash || ash || sh) terminal=34816 container_id=ee97d9c4186f image=docker.io/library/alpine)","priority":"Critical","rule":"Terminal shell in container","source":"syscall","tags":["container","mitre_execution","shell"],"time":"2023-05-25T13:44:05.478445995Z","output_fields":{"container.id":"ee97d9c4186f","container.image.repository":"docker.io/library/alpine","evt.time":1685022245478445995,"k8s.ns.name":"default","k8s.pod.name":"kubecon","proc.cmdline":"sh -c clear; (bash || ash || sh)","proc.name":"sh","proc.pname":"runc","proc.tty":34816,"user.loginuid":-1,"user.name":"root"}}"#;
    // The constant is valid; a failure here is a programming error caught by tests.
    aerie_alert::decode_alert(DOC.as_bytes()).expect("documentation alert decodes")
}
