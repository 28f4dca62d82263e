//! One shared timer thread for every fault delay in the process.
//!
//! Envoy has no per-stream timer for dynamic-module HTTP filters; it only lets another thread
//! post an event back to a stream's worker (`scheduler_commit`). So a delayed stream registers a
//! deadline here, and a single background thread (a min-heap of deadlines and a condition
//! variable) fires the stream's [`Due`] action when the deadline passes. No thread per request,
//! no polling: the thread sleeps until the earliest deadline or until an earlier one arrives.
//!
//! Cancellation is the action's business: the stream's action is a [`Revocable`] slot, which the
//! stream revokes (under the slot's lock) before it deletes its scheduler. A revoked entry stays
//! in the heap until its deadline and then fires as a no-op; it holds only a small `Arc`.

#![forbid(unsafe_code)]

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

/// Something the timer fires once its deadline passed (on the timer thread).
pub trait Due: Send + Sync {
    /// Runs the action. Must be quick: it runs on the shared timer thread.
    fn fire(&self);
}

/// A one-shot action that can be revoked. `fire` runs it under the slot's lock and `revoke`
/// takes that lock too, so once `revoke` returned the action is not running and never will.
pub struct Revocable<F> {
    action: Mutex<Option<F>>,
}

impl<F> std::fmt::Debug for Revocable<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocable")
            .field("armed", &lock(&self.action).is_some())
            .finish()
    }
}

impl<F> Revocable<F> {
    /// An armed slot.
    pub fn new(action: F) -> Self {
        Revocable {
            action: Mutex::new(Some(action)),
        }
    }

    /// Disarms the slot, waiting for a running `fire` to finish.
    pub fn revoke(&self) {
        *lock(&self.action) = None;
    }

    /// True until fired or revoked (what the tests observe; the filter never asks).
    #[cfg(test)]
    pub fn is_armed(&self) -> bool {
        lock(&self.action).is_some()
    }
}

impl<F: FnMut() + Send> Due for Revocable<F> {
    fn fire(&self) {
        let mut slot = lock(&self.action);
        if let Some(mut action) = slot.take() {
            // Still holding the lock: a concurrent `revoke` waits for this to finish.
            action();
        }
    }
}

/// Locks a mutex, recovering from poisoning: a panic elsewhere must not stop the timer.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Entry {
    deadline: Instant,
    seq: u64,
    due: Arc<dyn Due>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Equal deadlines fire in scheduling order.
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    running: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// A timer thread and its deadline heap. [`Timer::global`] is the process-wide one.
#[derive(Clone, Default)]
pub struct Timer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("pending", &self.pending())
            .finish()
    }
}

impl Timer {
    /// A new timer; its thread starts with the first [`Timer::schedule`].
    pub fn new() -> Self {
        Timer::default()
    }

    /// The process-wide timer every stream shares.
    pub fn global() -> &'static Timer {
        static GLOBAL: OnceLock<Timer> = OnceLock::new();
        GLOBAL.get_or_init(Timer::new)
    }

    /// Fires `due` once `deadline` passed. Fails only if the timer thread cannot be started.
    pub fn schedule(&self, deadline: Instant, due: Arc<dyn Due>) -> Result<(), String> {
        let mut q = lock(&self.shared.queue);
        if !q.running {
            let shared = Arc::clone(&self.shared);
            std::thread::Builder::new()
                .name("layover-timer".into())
                .spawn(move || run(&shared))
                .map_err(|e| format!("cannot start the layover timer thread: {e}"))?;
            q.running = true;
        }
        q.seq += 1;
        let seq = q.seq;
        let earliest = q.heap.peek().map(|Reverse(e)| e.deadline);
        q.heap.push(Reverse(Entry { deadline, seq, due }));
        drop(q);
        if earliest.is_none_or(|e| deadline < e) {
            // The thread sleeps until the old earliest deadline (or forever): wake it to re-plan.
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Entries not fired yet (revoked ones included until their deadline).
    pub fn pending(&self) -> usize {
        lock(&self.shared.queue).heap.len()
    }
}

fn run(shared: &Shared) {
    let mut q = lock(&shared.queue);
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(Reverse(first)) = q.heap.peek() {
            if first.deadline > now {
                break;
            }
            if let Some(Reverse(entry)) = q.heap.pop() {
                due.push(entry.due);
            }
        }
        if !due.is_empty() {
            // Fire without the queue lock, so streams can schedule meanwhile.
            drop(q);
            for d in due {
                // A panicking action must not kill the one timer thread.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.fire()));
            }
            q = lock(&shared.queue);
            continue;
        }
        q = match q.heap.peek().map(|Reverse(e)| e.deadline) {
            None => shared.wake.wait(q).unwrap_or_else(|e| e.into_inner()),
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(now);
                shared
                    .wake
                    .wait_timeout(q, wait)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn sender_action(
        tx: mpsc::Sender<(u32, Instant)>,
        id: u32,
    ) -> Arc<Revocable<impl FnMut() + Send>> {
        let tx = Mutex::new(tx);
        Arc::new(Revocable::new(move || {
            let _ = lock(&tx).send((id, Instant::now()));
        }))
    }

    #[test]
    fn fires_in_deadline_order_not_schedule_order() {
        let timer = Timer::new();
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        for (id, ms) in [(3, 60), (1, 20), (2, 40), (0, 0)] {
            timer
                .schedule(
                    start + Duration::from_millis(ms),
                    sender_action(tx.clone(), id),
                )
                .unwrap();
        }
        let got: Vec<(u32, Instant)> = (0..4)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
        for (id, at) in got {
            let expected = start + Duration::from_millis(u64::from(id) * 20);
            assert!(at >= expected, "entry {id} fired early");
        }
        assert_eq!(timer.pending(), 0);
    }

    #[test]
    fn an_earlier_deadline_wakes_a_sleeping_timer() {
        let timer = Timer::new();
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        timer
            .schedule(
                start + Duration::from_secs(30),
                sender_action(tx.clone(), 1),
            )
            .unwrap();
        // Give the thread time to go to sleep on the 30 s deadline.
        std::thread::sleep(Duration::from_millis(20));
        timer
            .schedule(start + Duration::from_millis(30), sender_action(tx, 2))
            .unwrap();
        let (id, _) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(id, 2);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(timer.pending(), 1);
    }

    #[test]
    fn revoked_actions_never_fire() {
        let timer = Timer::new();
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        let cancelled = sender_action(tx.clone(), 1);
        let kept = sender_action(tx, 2);
        timer
            .schedule(start + Duration::from_millis(20), cancelled.clone())
            .unwrap();
        timer
            .schedule(start + Duration::from_millis(40), kept.clone())
            .unwrap();
        cancelled.revoke();
        let (id, _) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(id, 2);
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        assert!(!cancelled.is_armed());
        assert!(!kept.is_armed(), "one-shot: disarmed after firing");
    }

    #[test]
    fn revoke_waits_for_a_running_fire() {
        // The action blocks until told to finish; revoke must not return while it runs.
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let (finish_tx, finish_rx) = mpsc::channel::<()>();
        let started_tx = Mutex::new(started_tx);
        let finish_rx = Mutex::new(finish_rx);
        let done = Arc::new(Mutex::new(false));
        let done2 = Arc::clone(&done);
        let slot = Arc::new(Revocable::new(move || {
            lock(&started_tx).send(()).unwrap();
            lock(&finish_rx).recv().unwrap();
            *lock(&done2) = true;
        }));
        let timer = Timer::new();
        timer.schedule(Instant::now(), slot.clone()).unwrap();
        started_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let revoker = {
            let slot = slot.clone();
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                slot.revoke();
                *lock(&done)
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        finish_tx.send(()).unwrap();
        assert!(
            revoker.join().unwrap(),
            "revoke returned before the fire finished"
        );
    }

    #[test]
    fn a_panicking_action_does_not_kill_the_timer() {
        let timer = Timer::new();
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        timer
            .schedule(start, Arc::new(Revocable::new(|| panic!("boom"))))
            .unwrap();
        timer
            .schedule(start + Duration::from_millis(10), sender_action(tx, 1))
            .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().0, 1);
    }
}
