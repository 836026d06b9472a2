//! `examples/embed.rs` run end to end: the crates wired by hand in a host
//! service, one message from TCP to WebSocket, the im API nested under `/im`.

use crate::embed_example::run;

#[tokio::test]
async fn embedding_example_sends_one_message_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path()).await.unwrap();
    assert_eq!(out.seq, 1, "first message of a new conversation");
    assert_eq!(out.received, "hello from the host service");
    assert!(
        out.host_page.starts_with("host service"),
        "{}",
        out.host_page
    );
    let v: serde_json::Value = serde_json::from_str(&out.bob_conversations).unwrap();
    assert_eq!(v["code"], 0, "{v}");
    let conv = &v["data"][0];
    assert_eq!(conv["conversationID"], "single_alice_bob", "{v}");
    assert_eq!(conv["unreadCount"], 1, "{v}");
    assert_eq!(conv["maxSeq"], 1, "{v}");
}
