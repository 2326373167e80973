//! A multi-producer, multi-consumer queue bounded in bytes and in records.
//!
//! When full, `push` waits: the policy is backpressure, never dropping. Capacity is released by the consumer
//! only when it is done with an item (`release`), so items being exported still count against the bound and
//! memory stays capped. An item larger than the whole capacity is still admitted when the queue is empty, so a
//! single huge batch cannot deadlock the pipeline.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::otlp::Encoded;
use crate::telemetry::Metrics;

/// What an item weighs against the queue's bounds.
pub trait Weighted {
    fn bytes(&self) -> usize;
    fn records(&self) -> usize;
}

impl Weighted for Encoded {
    fn bytes(&self) -> usize {
        self.body.len()
    }
    fn records(&self) -> usize {
        self.records
    }
}

struct State<T> {
    items: VecDeque<T>,
    /// Bytes and records of items queued or taken and not yet released.
    bytes: usize,
    records: usize,
    closed: bool,
}

/// The queue; clone the `Arc` to share it.
pub struct Queue<T> {
    state: Mutex<State<T>>,
    max_bytes: usize,
    max_records: usize,
    space: Notify,
    items: Notify,
    metrics: Arc<Metrics>,
}

impl<T: Weighted> Queue<T> {
    pub fn new(max_bytes: usize, max_records: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Queue {
            state: Mutex::new(State { items: VecDeque::new(), bytes: 0, records: 0, closed: false }),
            max_bytes,
            max_records,
            space: Notify::new(),
            items: Notify::new(),
            metrics,
        })
    }

    /// Enqueues `item`, waiting while the queue is full. Returns the item back if the queue is closed.
    pub async fn push(&self, item: T) -> Result<(), T> {
        let (bytes, records) = (item.bytes(), item.records());
        let mut item = Some(item);
        loop {
            let space = self.space.notified();
            {
                let mut s = self.state.lock().expect("queue lock");
                if s.closed {
                    return Err(item.take().expect("item still held"));
                }
                let fits = s.bytes + bytes <= self.max_bytes && s.records + records <= self.max_records;
                if fits || (s.bytes == 0 && s.records == 0) {
                    s.bytes += bytes;
                    s.records += records;
                    s.items.push_back(item.take().expect("item still held"));
                    self.publish(&s);
                    drop(s);
                    self.items.notify_one();
                    return Ok(());
                }
            }
            space.await;
        }
    }

    /// Takes the oldest item, waiting for one; `None` once closed and empty. Call `release` when done with it.
    pub async fn pop(&self) -> Option<T> {
        loop {
            let ready = self.items.notified();
            {
                let mut s = self.state.lock().expect("queue lock");
                if let Some(item) = s.items.pop_front() {
                    if !s.items.is_empty() {
                        // Wake another consumer: notify_one stores a single permit.
                        self.items.notify_one();
                    }
                    return Some(item);
                }
                if s.closed {
                    return None;
                }
            }
            ready.await;
        }
    }

    /// Gives back the capacity of an item taken with `pop`.
    pub fn release(&self, bytes: usize, records: usize) {
        let mut s = self.state.lock().expect("queue lock");
        s.bytes = s.bytes.saturating_sub(bytes);
        s.records = s.records.saturating_sub(records);
        self.publish(&s);
        drop(s);
        self.space.notify_waiters();
    }

    /// No more pushes; consumers drain what is left, then `pop` returns `None`.
    pub fn close(&self) {
        self.state.lock().expect("queue lock").closed = true;
        self.items.notify_waiters();
        self.space.notify_waiters();
    }

    /// Records queued or in flight.
    pub fn records(&self) -> usize {
        self.state.lock().expect("queue lock").records
    }

    /// Closes and empties the queue (after a failed drain); the caller accounts for what it held.
    pub fn abandon(&self) {
        let mut s = self.state.lock().expect("queue lock");
        s.closed = true;
        s.items.clear();
        s.bytes = 0;
        s.records = 0;
        self.publish(&s);
    }

    fn publish(&self, s: &State<T>) {
        self.metrics.queue_bytes.set(s.bytes as i64);
        self.metrics.queue_records.set(s.records as i64);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    struct Item(usize);
    impl Weighted for Item {
        fn bytes(&self) -> usize {
            self.0
        }
        fn records(&self) -> usize {
            1
        }
    }

    #[tokio::test]
    async fn push_waits_for_release_and_close_drains() {
        let q = Queue::new(100, 10, Metrics::new());
        q.push(Item(60)).await.ok().unwrap();
        let q2 = q.clone();
        let blocked = tokio::spawn(async move { q2.push(Item(60)).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!blocked.is_finished(), "second push must wait: 120 bytes > 100");
        let first = q.pop().await.unwrap();
        // Popping alone does not free capacity: the item is still in flight.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!blocked.is_finished());
        q.release(first.0, 1);
        assert!(blocked.await.unwrap());
        q.close();
        assert_eq!(q.pop().await.map(|i| i.0), Some(60));
        assert!(q.pop().await.is_none());
        assert!(q.push(Item(1)).await.is_err());
    }

    #[tokio::test]
    async fn oversized_item_is_admitted_into_an_empty_queue() {
        let q = Queue::new(10, 10, Metrics::new());
        q.push(Item(1000)).await.ok().unwrap();
        assert_eq!(q.records(), 1);
    }

    #[tokio::test]
    async fn record_bound_applies_too() {
        let q = Queue::new(1 << 20, 2, Metrics::new());
        q.push(Item(1)).await.ok().unwrap();
        q.push(Item(1)).await.ok().unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), q.push(Item(1))).await;
        assert!(third.is_err(), "a third record must wait");
    }
}
