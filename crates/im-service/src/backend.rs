//! The app backend's credential: one shared secret (`backend.token`) that
//! the app's own server holds and users never see. It authorises the calls
//! the server takes from the app backend only (system notices today).
//!
//! Only the SHA-256 of the token is kept, and presented tokens are compared
//! by digest in constant time, so neither the token nor its length leaks
//! through timing, `Debug` or logs. Without a configured token every such
//! call is refused.

use sha2::{Digest, Sha256};

/// Why a backend call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BackendAuthError {
    /// No backend token is configured: the backend API is off.
    #[error("the backend API is disabled (no backend token configured)")]
    Disabled,
    /// No `Authorization: Bearer` header.
    #[error("backend token required")]
    Missing,
    /// A token that is not the backend token.
    #[error("invalid backend token")]
    Wrong,
}

/// Checks the app backend's token.
#[derive(Clone, Default)]
pub struct BackendAuth {
    digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for BackendAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendAuth")
            .field("enabled", &self.enabled())
            .finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl BackendAuth {
    /// No token: every backend call is refused.
    pub fn disabled() -> Self {
        Self { digest: None }
    }

    /// Accepts exactly `token` (an empty token disables the backend API).
    pub fn new(token: &str) -> Self {
        if token.is_empty() {
            return Self::disabled();
        }
        Self {
            digest: Some(digest(token.as_bytes())),
        }
    }

    pub fn enabled(&self) -> bool {
        self.digest.is_some()
    }

    /// Checks a presented token (the `Bearer` value, if any).
    pub fn check(&self, presented: Option<&[u8]>) -> Result<(), BackendAuthError> {
        let Some(want) = &self.digest else {
            return Err(BackendAuthError::Disabled);
        };
        let Some(given) = presented.filter(|t| !t.is_empty()) else {
            return Err(BackendAuthError::Missing);
        };
        let got = digest(given);
        let diff = got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            Ok(())
        } else {
            Err(BackendAuthError::Wrong)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_the_token() {
        let b = BackendAuth::new("s3cret-backend");
        assert!(b.enabled());
        assert_eq!(b.check(Some(b"s3cret-backend")), Ok(()));
        assert_eq!(
            b.check(Some(b"s3cret-backenD")),
            Err(BackendAuthError::Wrong)
        );
        assert_eq!(b.check(Some(b"s3cret")), Err(BackendAuthError::Wrong));
        assert_eq!(b.check(None), Err(BackendAuthError::Missing));
        assert_eq!(b.check(Some(b"")), Err(BackendAuthError::Missing));
        assert!(!format!("{b:?}").contains("s3cret"));
    }

    #[test]
    fn disabled_refuses_everything() {
        for b in [BackendAuth::disabled(), BackendAuth::new("")] {
            assert!(!b.enabled());
            assert_eq!(b.check(Some(b"x")), Err(BackendAuthError::Disabled));
        }
    }
}
