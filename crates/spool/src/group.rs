//! A commit group: the appenders whose records go to disk in one write (and
//! one fsync). Each appender waits on the group, blocking or as a future.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};

#[derive(Debug, Default)]
pub(crate) struct Group {
    state: Mutex<GroupState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct GroupState {
    /// `Ok(first sequence number of the group)` once durable.
    result: Option<Result<u64>>,
    wakers: Vec<Waker>,
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn complete(&self, result: Result<u64>) {
        let wakers = {
            let mut st = self.lock();
            st.result = Some(result);
            std::mem::take(&mut st.wakers)
        };
        self.done.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    pub fn wait(&self) -> Result<u64> {
        let mut st = self.lock();
        loop {
            if let Some(r) = &st.result {
                return r.clone();
            }
            st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<Result<u64>> {
        let mut st = self.lock();
        if let Some(r) = &st.result {
            return Poll::Ready(r.clone());
        }
        if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            st.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A ticket for records placed in a commit group: `index..index+count`
/// within the group.
#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    pub group: Arc<Group>,
    pub index: u64,
    pub count: u64,
}

impl Ticket {
    pub fn wait(&self) -> Result<Range<u64>> {
        self.group.wait().map(|first| self.range(first))
    }

    fn range(&self, first: u64) -> Range<u64> {
        first + self.index..first + self.index + self.count
    }
}

/// Resolves once the appended records are durable (per the fsync policy),
/// to their sequence numbers.
///
/// The records are queued when the `append*_async` call returns, not when the
/// future is first polled: dropping the future does not cancel the append.
#[derive(Debug)]
#[must_use = "the append is queued either way; await the future to learn whether it became durable"]
pub struct AppendFuture {
    state: Option<Result<Ticket>>,
}

impl AppendFuture {
    pub(crate) fn new(ticket: Result<Ticket>) -> AppendFuture {
        AppendFuture {
            state: Some(ticket),
        }
    }
}

impl Future for AppendFuture {
    type Output = Result<Range<u64>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ticket = match self.state.as_ref() {
            None => return Poll::Ready(Err(Error::Closed)),
            Some(Err(_)) => {
                let Some(Err(e)) = self.state.take() else {
                    return Poll::Ready(Err(Error::Closed));
                };
                return Poll::Ready(Err(e));
            }
            Some(Ok(t)) => t,
        };
        match ticket.group.poll(cx) {
            Poll::Ready(r) => {
                let out = r.map(|first| ticket.range(first));
                self.state = None;
                Poll::Ready(out)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
