use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use im_core::model::NewMessage;
use im_core::{ConversationType, UserId};
use im_service::writer::WriteError;
use im_service::{MessageWriter, WriterConfig};
use im_testkit::MemoryStore;

fn msg(i: usize, conv: &str) -> NewMessage {
    let a = UserId::parse("a").unwrap();
    let b = UserId::parse("b").unwrap();
    NewMessage {
        server_msg_id: format!("s{i}"),
        client_msg_id: format!("c{i}"),
        conversation_id: conv.into(),
        conversation_type: ConversationType::Single,
        sender_id: a.clone(),
        receiver_id: "b".into(),
        group_id: String::new(),
        message_type: 1,
        content: Bytes::from_static(b"hi"),
        send_time: 0,
        server_time: 0,
        extra: String::new(),
        participants: vec![a, b],
    }
}

#[tokio::test]
async fn batches_and_keeps_order_per_conversation() {
    let store = Arc::new(MemoryStore::new());
    let cfg = WriterConfig {
        batch_size: 50,
        linger: Duration::from_millis(5),
        workers: 2,
        ..WriterConfig::default()
    };
    let (w, _set) = MessageWriter::spawn(store.clone(), &cfg);
    let mut pend = Vec::new();
    for i in 0..500 {
        let conv = if i % 2 == 0 {
            "single_a_b"
        } else {
            "single_a_c"
        };
        pend.push(w.submit(msg(i, conv)).await.unwrap());
    }
    let mut seqs_ab = Vec::new();
    for (i, p) in pend.into_iter().enumerate() {
        let a = p.wait().await.unwrap();
        assert!(!a.duplicate);
        if i % 2 == 0 {
            seqs_ab.push(a.message.seq);
        }
    }
    assert_eq!(seqs_ab, (1..=250).collect::<Vec<i64>>());
    // Batching happened: far fewer transactions than messages.
    assert!(
        store.append_calls() < 100,
        "{} transactions",
        store.append_calls()
    );
}

#[tokio::test]
async fn retries_retryable_failures_then_succeeds() {
    let store = Arc::new(MemoryStore::new());
    store.fail_next_appends(2);
    let (w, _set) = MessageWriter::spawn(store.clone(), &WriterConfig::default());
    let a = w
        .submit(msg(1, "single_a_b"))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(a.message.seq, 1);
    assert_eq!(store.all_messages().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn gives_up_when_store_stays_down() {
    let store = Arc::new(MemoryStore::new());
    store.fail_next_appends(100);
    let (w, _set) = MessageWriter::spawn(store.clone(), &WriterConfig::default());
    let r = w.submit(msg(1, "single_a_b")).await.unwrap().wait().await;
    assert!(
        matches!(r, Err(WriteError::Store(ref e)) if e.is_retryable()),
        "{r:?}"
    );
    assert!(store.all_messages().is_empty());
}

#[tokio::test]
async fn full_queue_is_refused_not_grown() {
    let store = Arc::new(MemoryStore::new());
    store.set_unavailable(true); // worker stalls in retries
    let cfg = WriterConfig {
        batch_size: 1,
        queue_capacity: 2,
        linger: Duration::ZERO,
        enqueue_timeout: Duration::from_millis(20),
        workers: 1,
    };
    let (w, _set) = MessageWriter::spawn(store.clone(), &cfg);
    let mut refused = 0;
    let mut held = Vec::new();
    for i in 0..10 {
        match w.submit(msg(i, "single_a_b")).await {
            Ok(p) => held.push(p),
            Err(WriteError::Overloaded) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused >= 6, "refused {refused}");
    assert!(held.len() <= 4);
}
