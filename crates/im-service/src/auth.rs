//! Token authentication: HS256 JWTs with the contract's claims (§5), and the
//! opt-in `demo_token_<user>` development shortcut.

use im_core::{ErrorCode, UserId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Prefix of development tokens (`demo_token_<user>`).
pub const DEMO_PREFIX: &str = "demo_token_";

/// The JWT claims of the contract: `user_id`, `platform`, `iat`/`exp` in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub user_id: String,
    #[serde(default)]
    pub platform: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Token id, the handle of revocation (tokens we issue always have one;
    /// tokens minted elsewhere may not, and then cannot be revoked one by one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `refresh` for refresh tokens; absent for access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
}

/// `typ` claim of refresh tokens.
pub const REFRESH_TYP: &str = "refresh";

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserId,
    /// The platform claim of the token (may be empty for demo tokens).
    pub platform: String,
    /// Expiry in seconds since the epoch (`i64::MAX` for demo tokens).
    pub expires_at: i64,
    /// The token's `jti` (None for demo tokens and tokens minted without one).
    pub token_id: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("invalid token")]
    Invalid,
    #[error("token has no valid user_id")]
    BadUser,
    #[error("demo tokens are disabled")]
    DemoDisabled,
    #[error("token user does not match user_id")]
    UserMismatch,
    #[error("token has been revoked")]
    Revoked,
    #[error("invalid username or password")]
    BadCredentials,
    #[error("wrong kind of token (refresh tokens only refresh; access tokens do not)")]
    WrongKind,
    #[error("cannot sign token: {0}")]
    Signing(String),
}

impl AuthError {
    /// The wire error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Expired => ErrorCode::TokenExpired,
            _ => ErrorCode::AuthFailed,
        }
    }

    /// A short, stable, machine-readable name (HTTP `error`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Expired => "token_expired",
            Self::Revoked => "token_revoked",
            Self::BadCredentials => "bad_credentials",
            Self::WrongKind => "wrong_token_kind",
            Self::Signing(_) => "internal",
            _ => "unauthorized",
        }
    }

    /// The `reason` label of [`crate::metrics::AUTH_FAILURES`]: finer than
    /// [`Self::reason`], which must not tell clients why a token failed.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Invalid => "invalid",
            Self::BadUser => "bad_user",
            Self::DemoDisabled => "demo_disabled",
            Self::UserMismatch => "user_mismatch",
            Self::Revoked => "revoked",
            Self::BadCredentials => "bad_credentials",
            Self::WrongKind => "wrong_kind",
            Self::Signing(_) => "signing",
        }
    }
}

/// Issues and verifies tokens with one HS256 secret.
#[derive(Clone)]
pub struct JwtAuth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    allow_demo: bool,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("allow_demo", &self.allow_demo)
            .finish_non_exhaustive()
    }
}

impl JwtAuth {
    /// A verifier/issuer for `secret`. `alg` is pinned to HS256, `exp` is
    /// required and checked without leeway, `nbf` is checked when present.
    pub fn new(secret: &[u8], allow_demo_tokens: bool) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            allow_demo: allow_demo_tokens,
        }
    }

    /// Signs an access token for `user` on `platform`, valid `ttl_secs` from
    /// `now_secs`, with a fresh random `jti`.
    pub fn issue(
        &self,
        user: &UserId,
        platform: &str,
        now_secs: i64,
        ttl_secs: i64,
    ) -> Result<String, AuthError> {
        self.sign(user, platform, now_secs, ttl_secs, None)
    }

    /// Signs a refresh token (`typ: refresh`): it is accepted only by
    /// [`JwtAuth::verify_refresh`], never as an access token.
    pub fn issue_refresh(
        &self,
        user: &UserId,
        platform: &str,
        now_secs: i64,
        ttl_secs: i64,
    ) -> Result<String, AuthError> {
        self.sign(user, platform, now_secs, ttl_secs, Some(REFRESH_TYP))
    }

    fn sign(
        &self,
        user: &UserId,
        platform: &str,
        now_secs: i64,
        ttl_secs: i64,
        typ: Option<&str>,
    ) -> Result<String, AuthError> {
        let claims = Claims {
            user_id: user.as_str().to_owned(),
            platform: platform.to_owned(),
            iat: now_secs,
            exp: now_secs.saturating_add(ttl_secs),
            nbf: None,
            jti: Some(hex::encode(rand::random::<[u8; 16]>())),
            typ: typ.map(str::to_owned),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Signing(e.to_string()))
    }

    /// Verifies an access token (or a demo token, when enabled) and returns
    /// whose it is. Revocation is checked by the caller (it needs the store).
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if let Some(user) = token.strip_prefix(DEMO_PREFIX) {
            if !self.allow_demo {
                return Err(AuthError::DemoDisabled);
            }
            let user = UserId::parse(user).map_err(|_| AuthError::BadUser)?;
            return Ok(Identity {
                user,
                platform: String::new(),
                expires_at: i64::MAX,
                token_id: None,
            });
        }
        let claims = self.decode(token)?;
        if claims.typ.is_some() {
            return Err(AuthError::WrongKind);
        }
        Self::identity(claims)
    }

    /// Verifies a refresh token (never a demo or access token).
    pub fn verify_refresh(&self, token: &str) -> Result<Identity, AuthError> {
        let claims = self.decode(token)?;
        if claims.typ.as_deref() != Some(REFRESH_TYP) || claims.jti.is_none() {
            return Err(AuthError::WrongKind);
        }
        Self::identity(claims)
    }

    fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                _ => AuthError::Invalid,
            })
    }

    fn identity(claims: Claims) -> Result<Identity, AuthError> {
        let user = UserId::parse(claims.user_id).map_err(|_| AuthError::BadUser)?;
        Ok(Identity {
            user,
            platform: claims.platform,
            expires_at: claims.exp,
            token_id: claims.jti,
        })
    }

    /// Verifies `token` for a socket AUTH_REQ whose `claimed_user` (may be empty)
    /// must match the token's user when given.
    pub fn verify_for(&self, token: &str, claimed_user: &str) -> Result<Identity, AuthError> {
        let id = self.verify(token)?;
        if !claimed_user.is_empty() && claimed_user != id.user.as_str() {
            return Err(AuthError::UserMismatch);
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn uid(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn issue_then_verify() {
        let a = JwtAuth::new(b"secret", false);
        let t = a.issue(&uid("alice"), "iOS", now(), 3600).unwrap();
        let id = a.verify(&t).unwrap();
        assert_eq!(id.user.as_str(), "alice");
        assert_eq!(id.platform, "iOS");
        assert!(a.verify_for(&t, "alice").is_ok());
        assert!(a.verify_for(&t, "").is_ok());
        assert_eq!(a.verify_for(&t, "bob"), Err(AuthError::UserMismatch));
    }

    #[test]
    fn rejects_wrong_key_expired_and_garbage() {
        let a = JwtAuth::new(b"secret", false);
        let b = JwtAuth::new(b"other", false);
        let t = b.issue(&uid("alice"), "iOS", now(), 3600).unwrap();
        assert_eq!(a.verify(&t), Err(AuthError::Invalid));
        let old = a.issue(&uid("alice"), "iOS", now() - 7200, 3600).unwrap();
        assert_eq!(a.verify(&old), Err(AuthError::Expired));
        assert_eq!(AuthError::Expired.code(), ErrorCode::TokenExpired);
        assert_eq!(a.verify("not.a.jwt"), Err(AuthError::Invalid));
        assert_eq!(a.verify(""), Err(AuthError::Invalid));
    }

    #[test]
    fn rejects_alg_none_and_empty_user() {
        use base64_like::b64;
        let a = JwtAuth::new(b"secret", false);
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let payload =
            b64(format!(r#"{{"user_id":"alice","iat":0,"exp":{}}}"#, now() + 100).as_bytes());
        assert_eq!(
            a.verify(&format!("{header}.{payload}.")),
            Err(AuthError::Invalid)
        );
        let empty = a.issue(&uid("x"), "iOS", now(), 100).unwrap();
        // Re-sign a token whose user_id is empty.
        let claims = Claims {
            user_id: String::new(),
            platform: "iOS".into(),
            iat: now(),
            exp: now() + 100,
            nbf: None,
            jti: None,
            typ: None,
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert_eq!(a.verify(&t), Err(AuthError::BadUser));
        assert!(a.verify(&empty).is_ok());
    }

    #[test]
    fn rejects_not_yet_valid() {
        let a = JwtAuth::new(b"secret", false);
        let claims = Claims {
            user_id: "alice".into(),
            platform: String::new(),
            iat: now(),
            exp: now() + 1000,
            nbf: Some(now() + 500),
            jti: None,
            typ: None,
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert_eq!(a.verify(&t), Err(AuthError::NotYetValid));
    }

    #[test]
    fn refresh_and_access_tokens_do_not_mix() {
        let a = JwtAuth::new(b"secret", false);
        let access = a.issue(&uid("alice"), "iOS", now(), 3600).unwrap();
        let refresh = a.issue_refresh(&uid("alice"), "iOS", now(), 3600).unwrap();
        assert_eq!(a.verify(&refresh), Err(AuthError::WrongKind));
        assert_eq!(a.verify_refresh(&access), Err(AuthError::WrongKind));
        let id = a.verify_refresh(&refresh).unwrap();
        assert_eq!(id.user.as_str(), "alice");
        let jti = id.token_id.unwrap();
        assert_eq!(jti.len(), 32);
        // Every token gets its own id.
        let other = a.issue(&uid("alice"), "iOS", now(), 3600).unwrap();
        assert_ne!(
            a.verify(&access).unwrap().token_id,
            a.verify(&other).unwrap().token_id
        );
    }

    #[test]
    fn demo_tokens_only_when_enabled() {
        let off = JwtAuth::new(b"s", false);
        let on = JwtAuth::new(b"s", true);
        assert_eq!(off.verify("demo_token_alice"), Err(AuthError::DemoDisabled));
        assert_eq!(
            on.verify("demo_token_alice").unwrap().user.as_str(),
            "alice"
        );
        assert_eq!(on.verify("demo_token_"), Err(AuthError::BadUser));
        assert_eq!(on.verify("demo_token_a b"), Err(AuthError::BadUser));
    }

    mod base64_like {
        /// base64url without padding, enough for the alg=none test.
        pub fn b64(input: &[u8]) -> String {
            const T: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in input.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                let chars = chunk.len() + 1;
                for i in 0..chars {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }
}
