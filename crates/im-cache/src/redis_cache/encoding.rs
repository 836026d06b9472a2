//! The values stored in the route and presence hashes, and the parsing of
//! them (the Lua scripts of [`super::scripts`] parse the same format).
//!
//! A session entry is `<incarnation>:<len>:<node_id><platform>`: the
//! incarnation of the node process that wrote it (a decimal number, see
//! [`super::RedisCache::connect`]), the byte length of the node id, the
//! node id, then the platform. The length prefix keeps any node id and
//! platform unambiguous, `:` included. The entry is live while the node's
//! liveness key holds that same incarnation, so the sessions of a killed
//! node die with its key, and those of its previous run die as soon as it
//! restarts under the same id.

/// A decoded session entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionEntry<'a> {
    pub incarnation: &'a str,
    pub node_id: &'a str,
    pub platform: &'a str,
}

/// Encodes a session entry.
pub(crate) fn encode_entry(incarnation: &str, node_id: &str, platform: &str) -> String {
    format!("{incarnation}:{}:{node_id}{platform}", node_id.len())
}

/// Decodes a session entry; `None` for anything malformed (such entries are
/// treated as dead).
pub(crate) fn decode_entry(value: &str) -> Option<SessionEntry<'_>> {
    let (incarnation, rest) = value.split_once(':')?;
    let (len, rest) = rest.split_once(':')?;
    if incarnation.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: usize = len.parse().ok()?;
    let node_id = rest.get(..len)?;
    let platform = rest.get(len..)?;
    Some(SessionEntry {
        incarnation,
        node_id,
        platform,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn round_trips() {
        for (inc, node, platform) in [
            ("1", "node-a", "iOS"),
            ("42", "n:1:x", "Web:beta"),
            ("7", "", "Android"),
            ("7", "nœud", ""),
            ("123456789", "a", "3:b"),
        ] {
            let v = encode_entry(inc, node, platform);
            let e = decode_entry(&v).unwrap();
            assert_eq!(
                e,
                SessionEntry {
                    incarnation: inc,
                    node_id: node,
                    platform
                },
                "{v}"
            );
        }
    }

    #[test]
    fn the_format_is_stable() {
        // The Lua scripts parse this; changing it needs a migration.
        assert_eq!(encode_entry("5", "node-1", "iOS"), "5:6:node-1iOS");
        assert_eq!(encode_entry("5", "nœud", "Web"), "5:5:nœudWeb");
    }

    #[test]
    fn rejects_malformed() {
        for v in [
            "", "5", "5:", ":3:abc", "5:x:abc", "5:-1:abc", "5:+1:abc", "5:9:abc",
            // The length cuts a character in two.
            "5:1:œ",
        ] {
            assert_eq!(decode_entry(v), None, "{v:?}");
        }
    }
}
