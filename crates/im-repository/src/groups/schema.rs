//! Diesel tables of `migrations/{sqlite,postgres,mysql}/2025-11-28-000000_groups`
//! (and the `version` column of `2026-12-08-000000_group_version`)
//! (hand-written, like [`crate::schema`]).

use crate::schema::{
    conversations, deliveries, message_positions, messages, sync_clock, user_conversations, users,
};

diesel::table! {
    /// One row per group (dismissed ones stay, with status 1).
    chat_groups (group_id) {
        group_id -> Text,
        name -> Text,
        face_url -> Text,
        introduction -> Text,
        notification -> Text,
        extra -> Text,
        owner_id -> Text,
        status -> Integer,
        mute_all -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        /// Raised by every change to the group or its members
        /// (`2026-12-08-000000_group_version`).
        version -> BigInt,
    }
}

diesel::table! {
    /// Current members of each group.
    group_members (group_id, user_id) {
        group_id -> Text,
        user_id -> Text,
        role -> Integer,
        muted_until -> BigInt,
        joined_at -> BigInt,
    }
}

diesel::table! {
    /// Read cursor per (user, conversation).
    read_cursors (user_id, conversation_id) {
        user_id -> Text,
        conversation_id -> Text,
        read_seq -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::joinable!(group_members -> chat_groups (group_id));

/// `allow_tables_to_appear_in_same_query!` for `$t` and each of the others,
/// pair by pair (one list would re-declare the pairs of `crate::schema`).
macro_rules! allow_with {
    ($t:ident: $($other:ident),+ $(,)?) => {
        $( diesel::allow_tables_to_appear_in_same_query!($t, $other); )+
    };
}

allow_with!(chat_groups: group_members, read_cursors, conversations, messages, message_positions, sync_clock,
    user_conversations, deliveries, users);
allow_with!(group_members: read_cursors, conversations, messages, message_positions, sync_clock,
    user_conversations, deliveries, users);
allow_with!(read_cursors: conversations, messages, message_positions, sync_clock, user_conversations,
    deliveries, users);
