//! The Kubernetes audit source. Events arrive from the API server's webhook backend
//! ([`webhook`], Falco's k8saudit plugin endpoint) or from its log backend's files
//! ([`file`], JSON lines); either way each event is judged by the `k8s_audit` rules by
//! [`AuditSource`] and matches go to the same outputs as syscall alerts
//! (`"source": "k8s_audit"`).

pub mod file;
mod position;
pub mod webhook;

use std::sync::Arc;

use aerie_rules::{Engine, K8sAuditEvent, Matches, parse_audit_payload};

use crate::metrics::Metrics;
use crate::output::AlertSender;

pub use file::{FileFollower, follow_files};
pub use webhook::{router, serve};

/// What judging audit events needs: the rules, the host name and the outputs.
pub struct AuditSource {
    pub engine: Arc<Engine>,
    pub hostname: String,
    pub outputs: AlertSender,
    pub metrics: Arc<Metrics>,
}

impl AuditSource {
    /// Judge every event of one webhook body; returns (events, alerts).
    pub fn ingest(&self, body: &[u8]) -> Result<(usize, usize), aerie_rules::AuditPayloadError> {
        let events = parse_audit_payload(body)?;
        self.metrics.add_k8s_audit_events(events.len() as u64);
        let mut matches = Matches::new();
        let alerts = events
            .iter()
            .map(|ev| self.judge(ev, &mut matches, false))
            .sum();
        Ok((events.len(), alerts))
    }

    /// Judge one event and send an alert for each matching rule; returns the alerts sent.
    /// With `wait`, a full output queue is waited for (a file can pause) rather than the
    /// alert dropped and counted (the webhook must answer).
    pub fn judge(&self, ev: &K8sAuditEvent, matches: &mut Matches, wait: bool) -> usize {
        self.engine.evaluate(ev, matches);
        let mut alerts = 0;
        for id in matches.iter() {
            let alert = self.engine.alert(id, ev, &self.hostname);
            self.metrics.count_alert(&alert.rule, alert.priority);
            let line = Arc::from(alert.to_json());
            if wait {
                self.outputs.send_blocking(line);
            } else {
                self.outputs.send(line);
            }
            alerts += 1;
        }
        alerts
    }
}
