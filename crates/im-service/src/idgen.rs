//! Server message ids: 32 lower-case hex characters from 128 random bits
//! (the same shape as the reference server's MD5 ids, unique across nodes
//! without coordination).

use im_core::ports::IdGen;
use rand::RngCore;

/// Random 128-bit hex ids.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIdGen;

impl IdGen for RandomIdGen {
    fn server_msg_id(&self) -> String {
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        hex::encode(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex_and_distinct() {
        let g = RandomIdGen;
        let a = g.server_msg_id();
        let b = g.server_msg_id();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }
}
