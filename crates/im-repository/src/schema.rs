//! Backend-neutral diesel schema, mirroring `migrations/{sqlite,postgres,mysql}`.
//!
//! Written by hand (no `diesel print-schema`): the three migration folders must
//! produce these columns with these SQL types on every backend.

diesel::table! {
    /// One row per conversation: the gapless per-conversation seq counter,
    /// and the sync position of its newest message (`last_pos`, 0: none).
    conversations (conversation_id) {
        conversation_id -> Text,
        conversation_type -> Integer,
        max_seq -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        last_pos -> BigInt,
    }
}

diesel::table! {
    /// Every stored message.
    messages (id) {
        id -> BigInt,
        server_msg_id -> Text,
        client_msg_id -> Text,
        conversation_id -> Text,
        conversation_type -> Integer,
        sender_id -> Text,
        receiver_id -> Text,
        group_id -> Text,
        message_type -> Integer,
        content -> Binary,
        send_time -> BigInt,
        server_time -> BigInt,
        seq -> BigInt,
        extra -> Text,
        revoked_by -> Nullable<Text>,
        revoked_time -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// The v1 sync columns of `messages`: the same SQL table, declared apart
    /// because `messages` is at diesel's 16-column limit. `pos` is the
    /// message's sync position (see [`crate::plan`]).
    #[sql_name = "messages"]
    message_positions (id) {
        id -> BigInt,
        conversation_id -> Text,
        pos -> BigInt,
    }
}

diesel::table! {
    /// One row (`id` = 1): the highest sync position handed out. Advanced
    /// once per append batch; see [`crate::plan`] for why it orders commits.
    sync_clock (id) {
        id -> Integer,
        pos -> BigInt,
    }
}

diesel::table! {
    /// Which conversations a user takes part in.
    user_conversations (user_id, conversation_id) {
        user_id -> Text,
        conversation_id -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// MSG_ACK delivered cursor per (user, device, conversation).
    deliveries (user_id, device_id, conversation_id) {
        user_id -> Text,
        device_id -> Text,
        conversation_id -> Text,
        seq -> BigInt,
    }
}

diesel::table! {
    /// MSG_ACK per message and device (`2025-12-08-000000_acked_messages`).
    acked_messages (user_id, device_id, conversation_id, seq) {
        user_id -> Text,
        device_id -> Text,
        conversation_id -> Text,
        seq -> BigInt,
        acked_at -> BigInt,
    }
}

diesel::table! {
    /// Users seen by the server, with their profiles (the profile columns
    /// are those of `2025-11-29-000000_social`, see `crate::social`).
    users (user_id) {
        user_id -> Text,
        created_at -> BigInt,
        last_seen -> BigInt,
        nickname -> Text,
        avatar -> Text,
        phone -> Text,
        email -> Text,
        gender -> Integer,
        birth -> BigInt,
        signature -> Text,
        extra -> Text,
        updated_at -> BigInt,
    }
}

diesel::joinable!(messages -> conversations (conversation_id));
diesel::joinable!(user_conversations -> conversations (conversation_id));

diesel::allow_tables_to_appear_in_same_query!(
    conversations,
    messages,
    message_positions,
    sync_clock,
    user_conversations,
    deliveries,
    acked_messages,
    users,
);
