//! Accepting alerts for delivery: one bounded queue per output.
//!
//! This is the seam where aerie-spool's durable queue plugs in (issue 6). The contract:
//! - [`QueueSet::accept`] takes a batch of routed alerts and returns only once **every**
//!   (alert, output) job is queued, or refuses the whole batch ([`AcceptError::Full`] → 503
//!   with Retry-After). Ingest answers 2xx only after it returns `Ok`.
//! - Each output's worker drains its own [`Consumer`] with [`Consumer::recv_many`]; a slow output
//!   fills only its own queue.
//!
//! A durable implementation appends each alert once (its JSON plus the `(output, route)` targets)
//! with group commit before `accept` returns, keeps one cursor per output, and acknowledges a
//! job when the worker has delivered (or dead-lettered) it; `recv_many` then reads from the
//! cursor. Workers need no other change.

use std::sync::Arc;
use std::time::Instant;

use aerie_alert::Alert;
use tokio::sync::mpsc;

use crate::routing::Target;

/// An accepted alert, shared by every output it goes to.
#[derive(Debug)]
pub struct Envelope {
    pub alert: Alert,
    /// `POST /test`: skips dedup and rate limits.
    pub test: bool,
    pub received: Instant,
}

/// One alert for one output, with the route that sent it there.
#[derive(Debug, Clone)]
pub struct Job {
    pub envelope: Arc<Envelope>,
    pub route: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AcceptError {
    /// The output's queue is full; nothing of the batch was queued.
    #[error("queue of output {output} is full")]
    Full { output: usize },
    /// Shutting down.
    #[error("router is shutting down")]
    Closed,
}

/// The per-output queues (producer side).
pub struct QueueSet {
    senders: Vec<mpsc::Sender<Job>>,
    capacity: usize,
}

/// One output's queue (consumer side).
pub struct Consumer {
    rx: mpsc::Receiver<Job>,
}

impl QueueSet {
    pub fn new(outputs: usize, capacity: usize) -> (QueueSet, Vec<Consumer>) {
        let (senders, consumers) = (0..outputs)
            .map(|_| {
                let (tx, rx) = mpsc::channel(capacity);
                (tx, Consumer { rx })
            })
            .unzip();
        (QueueSet { senders, capacity }, consumers)
    }

    /// Queue every job of the batch, or none of them.
    pub fn accept(&self, batch: &[(Arc<Envelope>, Vec<Target>)]) -> Result<(), AcceptError> {
        let mut per_output = vec![0usize; self.senders.len()];
        for (_, targets) in batch {
            for t in targets {
                per_output[t.output as usize] += 1;
            }
        }
        // Reserve first so that a full queue refuses the batch before anything is sent.
        let mut permits = Vec::with_capacity(self.senders.len());
        for (o, &n) in per_output.iter().enumerate() {
            if n == 0 {
                permits.push(None);
                continue;
            }
            match self.senders[o].try_reserve_many(n) {
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
                    });
                }
            }
        }
        Ok(())
    }

    /// Jobs waiting in an output's queue.
    pub fn depth(&self, output: usize) -> usize {
        self.senders
            .get(output)
            .map(|s| self.capacity - s.capacity())
            .unwrap_or(0)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Consumer {
    /// Wait for at least one job, then take up to `limit`. Returns 0 once the queue is closed
    /// and drained.
    pub async fn recv_many(&mut self, buf: &mut Vec<Job>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Arc<Envelope> {
        Arc::new(Envelope {
            alert: crate::render::sample_alert(),
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
            .unwrap();
        assert_eq!(qs.depth(1), 2);
        // Output 1 is full: nothing of this batch may reach output 0 either.
        assert_eq!(
            qs.accept(&[(env(), to_both.clone())]),
            Err(AcceptError::Full { output: 1 })
        );
        assert_eq!(qs.depth(0), 0);
        let mut buf = Vec::new();
        assert_eq!(consumers[1].recv_many(&mut buf, 10).await, 2);
        qs.accept(&[(env(), to_both)]).unwrap();
        assert_eq!(qs.depth(0), 1);
        buf.clear();
        assert_eq!(consumers[0].recv_many(&mut buf, 10).await, 1);
    }
}
