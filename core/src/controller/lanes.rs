//! A bounded number of reconciles at once (`--max-concurrent-reconciles`), with priority for the
//! experiments that have something to do now. After a restart or a resync every experiment asks
//! for a look at once; those whose spec changed, that are being deleted or whose timer fell due
//! (a step's pause, an analysis look) go before those that were only woken by a watch event on
//! a pod or a Deployment, so that a thousand idle experiments cannot delay a due step.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Which queue a reconcile waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Something to do now: a new generation, a deletion, a timer due.
    Due,
    /// Woken by a related object; most likely nothing to write.
    Idle,
}

/// The permits, and who waits for one (each lane first come, first served; `Due` first).
#[derive(Debug)]
pub(crate) struct Lanes {
    queue: Mutex<Queue>,
}

#[derive(Debug)]
struct Queue {
    free: usize,
    due: VecDeque<oneshot::Sender<Permit>>,
    idle: VecDeque<oneshot::Sender<Permit>>,
}

/// The right to run one reconcile; handed to the next waiter when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    /// `None` only while the permit is being handed back (see [`Lanes::hand_over`]).
    lanes: Option<Arc<Lanes>>,
}

impl Lanes {
    /// `limit` reconciles at once; at least one.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        let queue = Queue { free: limit.max(1), due: VecDeque::new(), idle: VecDeque::new() };
        Arc::new(Lanes { queue: Mutex::new(queue) })
    }

    /// Waits for a permit in `lane`.
    pub(crate) async fn enter(self: &Arc<Self>, lane: Lane) -> Permit {
        let waiting = {
            let mut queue = self.queue.lock().expect("not poisoned");
            if queue.free > 0 {
                queue.free -= 1;
                return Permit { lanes: Some(self.clone()) };
            }
            let (sender, receiver) = oneshot::channel();
            match lane {
                Lane::Due => queue.due.push_back(sender),
                Lane::Idle => queue.idle.push_back(sender),
            }
            receiver
        };
        // A sender is only dropped after sending (or with the Lanes, which this Arc keeps alive).
        waiting.await.expect("a waiting reconcile's sender is kept until it is served")
    }

    /// Gives a freed permit to the first waiter still waiting, due lane first.
    fn hand_over(mut lanes: Arc<Self>) {
        loop {
            let next = {
                let mut queue = lanes.queue.lock().expect("not poisoned");
                match queue.due.pop_front().or_else(|| queue.idle.pop_front()) {
                    Some(next) => next,
                    None => {
                        queue.free += 1;
                        return;
                    }
                }
            };
            // A waiter that gave up (its reconcile was cancelled) hands the permit back.
            match next.send(Permit { lanes: Some(lanes) }) {
                Ok(()) => return,
                Err(mut back) => match back.lanes.take() {
                    Some(returned) => lanes = returned,
                    None => return,
                },
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(lanes) = self.lanes.take() {
            Lanes::hand_over(lanes);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn no_more_than_the_limit_run_and_due_waiters_go_before_idle_ones() {
        let lanes = Lanes::new(2);
        let (a, b) = (lanes.enter(Lane::Idle).await, lanes.enter(Lane::Idle).await);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for (name, lane) in [("idle-1", Lane::Idle), ("due-1", Lane::Due), ("idle-2", Lane::Idle), ("due-2", Lane::Due)]
        {
            let (lanes, order) = (lanes.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let permit = lanes.enter(lane).await;
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(permit);
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(order.lock().unwrap().is_empty(), "both permits are held");
        drop(a);
        tokio::time::sleep(Duration::from_millis(1)).await;
        drop(b);
        for w in waiters {
            tokio::time::timeout(Duration::from_secs(5), w).await.unwrap().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["due-1", "due-2", "idle-1", "idle-2"]);
        assert_eq!(lanes.queue.lock().unwrap().free, 2, "every permit came back");
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_keep_a_permit() {
        let lanes = Lanes::new(1);
        let held = lanes.enter(Lane::Due).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), lanes.enter(Lane::Due)).await;
        assert!(gave_up.is_err(), "no permit while one is held");
        drop(held);
        let next = tokio::time::timeout(Duration::from_secs(5), lanes.enter(Lane::Idle)).await;
        assert!(next.is_ok(), "the abandoned waiter's turn passed on");
    }
}
