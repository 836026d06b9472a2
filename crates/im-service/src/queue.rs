//! A session's bounded outgoing queue: many senders, one receiver.
//!
//! The same contract as `tokio::sync::mpsc::channel` for what sessions use
//! (`try_send`, `send`, `recv`, `try_recv`), built for the idle connection:
//! a tokio channel allocates its first block of slots and a cache-padded
//! state up front (measured: ~1.2 KiB per channel with 16-byte items, more
//! with larger ones), while this queue is one small allocation until
//! something is queued, and gives its buffer back when it drains.
//! Every connection holds one (two on WebSocket), so this is the difference
//! between meeting the per-connection memory budget or not (issue 7, W1).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Why [`Sender::try_send`] did not queue the value (which is handed back).
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The queue holds `capacity` values.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

/// The receiver is gone; the value is handed back.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed<T>(pub T);

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receiver_alive: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// Something was queued, or the last sender left.
    readable: Notify,
    /// A slot was freed, or the receiver left.
    writable: Notify,
}

/// A bounded queue of at most `capacity` (at least 1) values.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            receiver_alive: true,
        }),
        capacity: capacity.max(1),
        readable: Notify::new(),
        writable: Notify::new(),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

/// The sending half; clone it for more senders.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("queue::Sender")
            .field("capacity", &self.shared.capacity)
            .finish()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.state.lock().senders += 1;
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let last = {
            let mut s = self.shared.state.lock();
            s.senders = s.senders.saturating_sub(1);
            s.senders == 0
        };
        if last {
            self.shared.readable.notify_one();
        }
    }
}

impl<T> Sender<T> {
    /// Queues `value` if there is room, without waiting.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        {
            let mut s = self.shared.state.lock();
            if !s.receiver_alive {
                return Err(TrySendError::Closed(value));
            }
            if s.items.len() >= self.shared.capacity {
                return Err(TrySendError::Full(value));
            }
            s.items.push_back(value);
        }
        self.shared.readable.notify_one();
        Ok(())
    }

    /// Queues `value`, waiting for room while the queue is full.
    pub async fn send(&self, mut value: T) -> Result<(), Closed<T>> {
        loop {
            // Registered before trying, so a slot freed in between is not missed.
            let writable = self.shared.writable.notified();
            tokio::pin!(writable);
            writable.as_mut().enable();
            match self.try_send(value) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(v)) => return Err(Closed(v)),
                Err(TrySendError::Full(v)) => value = v,
            }
            writable.await;
        }
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        !self.shared.state.lock().receiver_alive
    }
}

/// The receiving half.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("queue::Receiver")
            .field("capacity", &self.shared.capacity)
            .finish()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let dropped = {
            let mut s = self.shared.state.lock();
            s.receiver_alive = false;
            std::mem::take(&mut s.items)
        };
        // Values are dropped outside the lock.
        drop(dropped);
        self.shared.writable.notify_waiters();
    }
}

impl<T> Receiver<T> {
    /// The next value, or `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            // Single receiver: a notification sent between the check and
            // the await is kept as a permit, so none is lost.
            match self.take() {
                Ok(v) => return Some(v),
                Err(true) => return None,
                Err(false) => self.shared.readable.notified().await,
            }
        }
    }

    /// The next value if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        self.take().ok()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.shared.state.lock().items.is_empty()
    }

    /// Pops a value; `Err(closed)` when there is none, `closed` being
    /// whether none can come any more.
    fn take(&mut self) -> Result<T, bool> {
        let popped = {
            let mut s = self.shared.state.lock();
            match s.items.pop_front() {
                Some(v) => {
                    if s.items.is_empty() && s.items.capacity() > 0 {
                        // Drained: hold no buffer while idle.
                        s.items = VecDeque::new();
                    }
                    Ok(v)
                }
                None => Err(s.senders == 0),
            }
        };
        if popped.is_ok() {
            self.shared.writable.notify_one();
        }
        popped
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn try_send_refuses_beyond_capacity_and_after_the_receiver_left() {
        let (tx, mut rx) = channel::<u32>(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(tx.try_send(3), Ok(()));
        assert!(!rx.is_empty());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.try_send(4), Err(TrySendError::Closed(4)));
    }

    #[tokio::test]
    async fn recv_keeps_order_and_ends_when_every_sender_is_gone() {
        let (tx, mut rx) = channel::<u32>(8);
        let tx2 = tx.clone();
        tx.try_send(1).unwrap();
        tx2.try_send(2).unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert!(rx.is_empty());
        drop(tx2);
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn recv_wakes_for_a_value_sent_later() {
        let (tx, mut rx) = channel::<u32>(1);
        let got = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.try_send(7).unwrap();
        assert_eq!(got.await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn send_waits_for_room_and_fails_when_the_receiver_leaves() {
        let (tx, mut rx) = channel::<u32>(1);
        tx.send(1).await.unwrap();
        let tx2 = tx.clone();
        let blocked = tokio::spawn(async move { tx2.send(2).await });
        tokio::task::yield_now().await;
        assert!(!blocked.is_finished());
        assert_eq!(rx.recv().await, Some(1));
        tokio::time::timeout(Duration::from_secs(5), blocked)
            .await
            .expect("the sender is woken by the freed slot")
            .unwrap()
            .unwrap();
        assert_eq!(rx.recv().await, Some(2));

        tx.send(3).await.unwrap();
        let tx3 = tx.clone();
        let blocked = tokio::spawn(async move { tx3.send(4).await });
        tokio::task::yield_now().await;
        drop(rx);
        let r = tokio::time::timeout(Duration::from_secs(5), blocked)
            .await
            .expect("the sender is woken when the receiver leaves")
            .unwrap();
        assert_eq!(r, Err(Closed(4)));
    }

    #[tokio::test]
    async fn many_senders_deliver_everything_exactly_once() {
        let (tx, mut rx) = channel::<u32>(4);
        let mut tasks = Vec::new();
        for t in 0..4u32 {
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..500u32 {
                    tx.send(t * 1000 + i).await.unwrap();
                }
            }));
        }
        drop(tx);
        let mut seen = Vec::new();
        while let Some(v) = rx.recv().await {
            seen.push(v);
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(seen.len(), 2000);
        for t in 0..4u32 {
            let mine: Vec<u32> = seen.iter().copied().filter(|v| v / 1000 == t).collect();
            assert_eq!(mine, (0..500).map(|i| t * 1000 + i).collect::<Vec<_>>());
        }
    }
}
