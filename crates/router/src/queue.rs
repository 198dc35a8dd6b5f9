//! Accepting alerts for delivery: one queue per output.
//!
//! - [`QueueSet::accept`] takes a batch of routed alerts and returns only once **every**
//!   (alert, output) job is queued, or refuses the whole batch (full → 503 with Retry-After).
//!   Ingest answers 2xx only after it returns `Ok`.
//! - Durable (`queue.dir` set, see [`crate::durable`]): each alert is appended once to an
//!   aerie-spool (its JSON plus the names of the outputs it goes to, with their routes) by group
//!   commit; the 2xx follows the commit. Each output reads through its own spool cursor, and a
//!   job is acked once delivered, dead-lettered, or (rate-limit digests) when its digest is sent.
//!   After a restart, unacked jobs are delivered again (at least once).
//! - Memory (no `queue.dir`): a bounded channel per output; lost on a crash.
//!
//! Each output's worker drains its own [`Consumer`] with [`Consumer::recv_many`]; a slow output
//! never delays the others.

use std::sync::Arc;
use std::time::Instant;

use aerie_spool::{Reader, Record, Spool};
use tokio::sync::{mpsc, watch};

use crate::durable::{decode_head, encode_record};
pub use crate::envelope::Envelope;
use crate::routing::Target;

/// One alert for one output, with the route that sent it there.
#[derive(Debug, Clone)]
pub struct Job {
    pub envelope: Arc<Envelope>,
    pub route: u16,
    /// The spool record behind this job (durable queue only): acked once delivered.
    pub record: Option<Arc<Record>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AcceptError {
    /// The output's queue is full; nothing of the batch was queued.
    #[error("queue of output {output} is full")]
    Full { output: usize },
    /// The durable queue is full (size limit or disk); nothing of the batch was queued.
    #[error("durable queue is full: {0}")]
    SpoolFull(String),
    /// The durable queue failed to store the batch.
    #[error("durable queue failed: {0}")]
    Spool(String),
    /// Shutting down.
    #[error("router is shutting down")]
    Closed,
}

/// The per-output queues (producer side).
pub enum QueueSet {
    Memory {
        senders: Vec<mpsc::Sender<Job>>,
        capacity: usize,
    },
    /// One aerie-spool holding each alert once; outputs read it through their own cursor.
    Durable { spool: Spool, names: Vec<String> },
}

/// One output's queue (consumer side).
pub enum Consumer {
    Memory(mpsc::Receiver<Job>),
    Durable(Box<DurableConsumer>),
}

/// An output's spool cursor; `stop` turns waiting into draining what is already stored.
pub struct DurableConsumer {
    pub reader: Reader,
    name: String,
    stop: watch::Receiver<bool>,
}

impl QueueSet {
    pub fn new(outputs: usize, capacity: usize) -> (QueueSet, Vec<Consumer>) {
        let (senders, consumers) = (0..outputs)
            .map(|_| {
                let (tx, rx) = mpsc::channel(capacity);
                (tx, Consumer::Memory(rx))
            })
            .unzip();
        (QueueSet::Memory { senders, capacity }, consumers)
    }

    /// The queues `cfg` asks for: durable when `queue.dir` is set (with the sender that tells
    /// its workers to stop waiting and drain), in memory otherwise.
    #[allow(clippy::type_complexity)]
    pub fn open(
        cfg: &crate::config::Config,
    ) -> anyhow::Result<(QueueSet, Vec<Consumer>, Option<watch::Sender<bool>>)> {
        let Some(dir) = &cfg.queue.dir else {
            tracing::warn!(
                "no queue.dir configured: alerts are queued in memory only and lost on a crash"
            );
            let (q, c) = QueueSet::new(cfg.outputs.len(), cfg.queue_capacity);
            return Ok((q, c, None));
        };
        let spool = Spool::open(dir, cfg.queue.spool_options())
            .map_err(|e| anyhow::anyhow!("opening the queue in {}: {e}", dir.display()))?;
        let names: Vec<String> = cfg.outputs.iter().map(|o| o.name.clone()).collect();
        let (tx, rx) = watch::channel(false);
        let (q, c) = QueueSet::durable(spool, &names, rx)
            .map_err(|e| anyhow::anyhow!("queue consumers in {}: {e}", dir.display()))?;
        tracing::info!(dir = %dir.display(), fsync = ?cfg.queue.fsync, "durable queue open");
        Ok((q, c, Some(tx)))
    }

    /// The durable queue: one consumer per output name, opened before any alert is accepted
    /// (a spool reclaims nothing for consumers it does not know). Consumers of outputs that
    /// are no longer configured are removed so that they do not pin disk space.
    pub fn durable(
        spool: Spool,
        names: &[String],
        stop: watch::Receiver<bool>,
    ) -> Result<(QueueSet, Vec<Consumer>), aerie_spool::Error> {
        for old in spool.consumers() {
            if !names.contains(&old) {
                tracing::warn!(consumer = %old, "output no longer configured; dropping its queue cursor");
                spool.remove_consumer(&old)?;
            }
        }
        let mut consumers = Vec::with_capacity(names.len());
        for n in names {
            consumers.push(Consumer::Durable(Box::new(DurableConsumer {
                reader: spool.reader(n)?,
                name: n.clone(),
                stop: stop.clone(),
            })));
        }
        Ok((
            QueueSet::Durable {
                spool,
                names: names.to_vec(),
            },
            consumers,
        ))
    }

    /// Queue every job of the batch, or none of them. With the durable queue this returns
    /// once the batch is committed to disk (per the fsync policy).
    pub async fn accept(&self, batch: &[(Arc<Envelope>, Vec<Target>)]) -> Result<(), AcceptError> {
        self.accept_with_json(batch, None).await
    }

    /// [`QueueSet::accept`]; `json` is the alert's JSON as received when the batch holds one
    /// alert that decoded from it: the durable queue stores it as is instead of serialising the
    /// alert again (workers decode it the same way either way).
    pub async fn accept_with_json(
        &self,
        batch: &[(Arc<Envelope>, Vec<Target>)],
        json_in: Option<&[u8]>,
    ) -> Result<(), AcceptError> {
        let json_in = json_in.filter(|_| batch.len() == 1);
        match self {
            QueueSet::Memory { senders, .. } => accept_memory(senders, batch),
            QueueSet::Durable { spool, names } => {
                let mut records = Vec::with_capacity(batch.len());
                let mut targets: Vec<(&str, u16)> = Vec::new();
                let mut json = Vec::with_capacity(512);
                for (env, ts) in batch {
                    if ts.is_empty() {
                        continue;
                    }
                    targets.clear();
                    for t in ts {
                        if let Some(n) = names.get(t.output as usize) {
                            targets.push((n.as_str(), t.route));
                        }
                    }
                    json.clear();
                    match json_in {
                        Some(raw) => json.extend_from_slice(raw.trim_ascii()),
                        None => serde_json::to_writer(&mut json, &env.alert)
                            .map_err(|e| AcceptError::Spool(e.to_string()))?,
                    }
                    let mut rec = Vec::with_capacity(json.len() + 16 * targets.len() + 2);
                    encode_record(&mut rec, env.test, &targets, &json);
                    records.push(rec);
                }
                if records.is_empty() {
                    return Ok(());
                }
                match spool.append_batch_async(&records).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_full() => Err(AcceptError::SpoolFull(e.to_string())),
                    Err(aerie_spool::Error::Closed) => Err(AcceptError::Closed),
                    Err(e) => Err(AcceptError::Spool(e.to_string())),
                }
            }
        }
    }

    /// Jobs waiting in an output's queue.
    pub fn depth(&self, output: usize) -> usize {
        match self {
            QueueSet::Memory { senders, capacity } => senders
                .get(output)
                .map(|s| capacity - s.capacity())
                .unwrap_or(0),
            QueueSet::Durable { spool, names } => {
                let Some(name) = names.get(output) else {
                    return 0;
                };
                spool
                    .metrics()
                    .consumers
                    .iter()
                    .find(|c| &c.name == name)
                    .map(|c| c.depth as usize)
                    .unwrap_or(0)
            }
        }
    }

    /// The spool's own metrics (Prometheus text), when the queue is durable.
    pub fn write_metrics(&self, out: &mut String) {
        if let QueueSet::Durable { spool, .. } = self {
            spool.metrics().write_prometheus(out, "aerie_router_spool");
        }
    }

    pub fn capacity(&self) -> usize {
        match self {
            QueueSet::Memory { capacity, .. } => *capacity,
            QueueSet::Durable { .. } => usize::MAX,
        }
    }
}

fn accept_memory(
    senders: &[mpsc::Sender<Job>],
    batch: &[(Arc<Envelope>, Vec<Target>)],
) -> Result<(), AcceptError> {
    let mut per_output = vec![0usize; senders.len()];
    for (_, targets) in batch {
        for t in targets {
            per_output[t.output as usize] += 1;
        }
    }
    // Reserve first so that a full queue refuses the batch before anything is sent.
    let mut permits = Vec::with_capacity(senders.len());
    for (o, &n) in per_output.iter().enumerate() {
        if n == 0 {
            permits.push(None);
            continue;
        }
        match senders[o].try_reserve_many(n) {
            Ok(p) => permits.push(Some(p)),
            Err(mpsc::error::TrySendError::Full(())) => {
                return Err(AcceptError::Full { output: o });
            }
            Err(mpsc::error::TrySendError::Closed(())) => return Err(AcceptError::Closed),
        }
    }
    for (env, targets) in batch {
        for t in targets {
            if let Some(Some(p)) = permits.get_mut(t.output as usize)
                && let Some(permit) = p.next()
            {
                permit.send(Job {
                    envelope: env.clone(),
                    route: t.route,
                    record: None,
                });
            }
        }
    }
    Ok(())
}

impl Consumer {
    /// Wait for at least one job, then take up to `limit`. Returns 0 once the queue is closed
    /// (memory) or stopping (durable) and drained of what is already stored.
    pub async fn recv_many(&mut self, buf: &mut Vec<Job>, limit: usize) -> usize {
        match self {
            Consumer::Memory(rx) => rx.recv_many(buf, limit).await,
            Consumer::Durable(d) => d.recv_many(buf, limit).await,
        }
    }

    /// Take up to `limit` more jobs that are already queued, without waiting.
    pub fn try_recv_more(&mut self, buf: &mut Vec<Job>, limit: usize) -> usize {
        let before = buf.len();
        match self {
            Consumer::Memory(rx) => {
                while buf.len() - before < limit {
                    match rx.try_recv() {
                        Ok(j) => buf.push(j),
                        Err(_) => break,
                    }
                }
            }
            Consumer::Durable(d) => d.try_recv_more(buf, limit),
        }
        buf.len() - before
    }

    pub fn ack_seq(&mut self, seq: u64) {
        if let Consumer::Durable(d) = self
            && let Err(e) = d.reader.ack(seq)
        {
            tracing::error!(consumer = %d.name, seq, error = %e, "ack failed");
        }
    }

    /// Move a record to the spool's dead-letter file (written, fsynced, then acked).
    pub fn dead_letter(&mut self, record: &Record, reason: &str) -> Result<(), String> {
        match self {
            Consumer::Durable(d) => d
                .reader
                .dead_letter(record, reason)
                .map_err(|e| e.to_string()),
            Consumer::Memory(_) => Ok(()),
        }
    }

    pub fn is_durable(&self) -> bool {
        matches!(self, Consumer::Durable(_))
    }

    /// Persist acks now (shutdown).
    pub fn sync(&mut self) {
        if let Consumer::Durable(d) = self
            && let Err(e) = d.reader.sync()
        {
            tracing::error!(consumer = %d.name, error = %e, "persisting the queue cursor failed");
        }
    }

    /// The shutdown signal (durable queue): retries give up waiting once it is set.
    pub fn stop_signal(&self) -> Option<watch::Receiver<bool>> {
        match self {
            Consumer::Durable(d) => Some(d.stop.clone()),
            Consumer::Memory(_) => None,
        }
    }
}

impl DurableConsumer {
    async fn recv_many(&mut self, buf: &mut Vec<Job>, limit: usize) -> usize {
        loop {
            let stopping = *self.stop.borrow();
            let recs = if stopping {
                match self.reader.fetch(limit) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(consumer = %self.name, error = %e, "reading the queue failed");
                        return 0;
                    }
                }
            } else {
                let got = tokio::select! {
                    r = self.reader.next_batch(limit) => Some(r),
                    _ = self.stop.changed() => None,
                };
                match got {
                    None => continue,
                    Some(Ok(r)) => r,
                    Some(Err(e)) => {
                        tracing::error!(consumer = %self.name, error = %e, "reading the queue failed; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        continue;
                    }
                }
            };
            if recs.is_empty() {
                // Stopping and drained, or the spool is closing.
                return 0;
            }
            let added = self.push_jobs(recs, buf);
            if added > 0 {
                return added;
            }
        }
    }

    fn try_recv_more(&mut self, buf: &mut Vec<Job>, limit: usize) {
        match self.reader.fetch(limit) {
            Ok(recs) => {
                self.push_jobs(recs, buf);
            }
            Err(e) => {
                tracing::error!(consumer = %self.name, error = %e, "reading the queue failed");
            }
        }
    }

    /// This output's jobs among `recs`, appended to `buf`; returns how many.
    fn push_jobs(&mut self, recs: Vec<Record>, buf: &mut Vec<Job>) -> usize {
        let before = buf.len();
        let received = Instant::now();
        for rec in recs {
            if let Some(j) = self.job(rec, received) {
                buf.push(j);
            }
        }
        buf.len() - before
    }

    /// Turn a record into this output's job; records for other outputs are acked here.
    fn job(&mut self, rec: Record, received: Instant) -> Option<Job> {
        let head = decode_head(&rec.payload, &self.name);
        let (test, route, at) = match head {
            Some(h) => match h.route {
                Some(r) => (h.test, r, h.json_at),
                None => {
                    let _ = self.reader.ack(rec.seq);
                    return None;
                }
            },
            None => {
                let _ = self.reader.dead_letter(&rec, "unreadable queue record");
                tracing::error!(consumer = %self.name, seq = rec.seq, "unreadable queue record moved to the dead-letter file");
                return None;
            }
        };
        match aerie_alert::decode_alert(&rec.payload[at..]) {
            Ok(alert) => Some(Job {
                envelope: Arc::new(Envelope {
                    alert,
                    test,
                    received,
                }),
                route,
                record: Some(Arc::new(rec)),
            }),
            Err(e) => {
                let reason = format!("stored alert does not decode: {e}");
                tracing::error!(consumer = %self.name, seq = rec.seq, %reason, "moved to the dead-letter file");
                let _ = self.reader.dead_letter(&rec, &reason);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Arc<Envelope> {
        Arc::new(Envelope {
            alert: crate::envelope::sample_alert(),
            test: false,
            received: Instant::now(),
        })
    }

    #[tokio::test]
    async fn full_queue_refuses_the_whole_batch() {
        let (qs, mut consumers) = QueueSet::new(2, 2);
        let to_both = vec![
            Target {
                output: 0,
                route: 0,
            },
            Target {
                output: 1,
                route: 0,
            },
        ];
        let to_one = vec![Target {
            output: 1,
            route: 0,
        }];
        qs.accept(&[(env(), to_one.clone()), (env(), to_one.clone())])
            .await
            .unwrap();
        assert_eq!(qs.depth(1), 2);
        // Output 1 is full: nothing of this batch may reach output 0 either.
        assert_eq!(
            qs.accept(&[(env(), to_both.clone())]).await,
            Err(AcceptError::Full { output: 1 })
        );
        assert_eq!(qs.depth(0), 0);
        let mut buf = Vec::new();
        assert_eq!(consumers[1].recv_many(&mut buf, 10).await, 2);
        qs.accept(&[(env(), to_both)]).await.unwrap();
        assert_eq!(qs.depth(0), 1);
        buf.clear();
        assert_eq!(consumers[0].recv_many(&mut buf, 10).await, 1);
    }
}
