//! Diesel tables of `migrations/{sqlite,postgres,mysql}/2025-11-29-000000_social`
//! (hand-written, like [`crate::schema`]; the profile columns it adds to
//! `users` are in `crate::schema::users`).

diesel::table! {
    /// Credentials of users who registered with a password.
    accounts (user_id) {
        user_id -> Text,
        password_hash -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// One side of a friendship: `owner_id`'s entry for `friend_id`.
    friends (owner_id, friend_id) {
        owner_id -> Text,
        friend_id -> Text,
        remark -> Text,
        add_source -> Integer,
        operator_id -> Text,
        extra -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// Friend requests, one per ordered pair.
    friend_requests (from_id, to_id) {
        from_id -> Text,
        to_id -> Text,
        message -> Text,
        status -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// `owner_id` blocked `blocked_id`.
    blocks (owner_id, blocked_id) {
        owner_id -> Text,
        blocked_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// Revoked tokens by JWT id, until they expire (seconds).
    revoked_tokens (jti) {
        jti -> Text,
        user_id -> Text,
        expires_at -> BigInt,
    }
}
