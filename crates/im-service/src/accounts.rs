//! Accounts and tokens: register and log in with a password (argon2id),
//! refresh-token rotation, logout with revocation, and the one place every
//! token is checked (`authenticate`: signature, expiry, kind, revocation).
//!
//! Password hashing is deliberately slow (tens of milliseconds of CPU and
//! ~19 MiB of memory per hash), so it runs on the blocking pool behind a
//! semaphore of `hash_concurrency` permits: a login storm queues instead of
//! starving the runtime or exhausting memory.

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use im_core::model::{Account, UserProfile};
use im_core::ports::{Clock, SystemClock, TokenRevocationStore, UserStore};
use im_core::{StoreError, UserId};
use tokio::sync::Semaphore;

use crate::auth::{AuthError, Identity, JwtAuth};
use crate::error::ServiceError;
use crate::hub::Hub;

/// Limits and lifetimes of the account service.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// Lifetime of access tokens.
    pub token_ttl: Duration,
    /// Lifetime of refresh tokens.
    pub refresh_ttl: Duration,
    /// Shortest password accepted at registration (bytes).
    pub min_password_len: usize,
    /// Password hashes computed at once; more wait.
    pub hash_concurrency: usize,
}

impl Default for AccountConfig {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(720 * 3600),
            refresh_ttl: Duration::from_secs(60 * 24 * 3600),
            min_password_len: 8,
            hash_concurrency: 2,
        }
    }
}

/// Longest password accepted (bytes): hashing cost must stay bounded.
pub const MAX_PASSWORD_LEN: usize = 256;
/// Longest nickname (characters).
pub const MAX_NICKNAME_CHARS: usize = 64;
/// Longest platform name (bytes).
const MAX_PLATFORM_LEN: usize = 32;

/// A signed-in user: the tokens and the profile.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    /// Access token expiry (seconds since the epoch).
    pub expires_at: i64,
    pub refresh_token: String,
    /// Refresh token expiry (seconds since the epoch).
    pub refresh_expires_at: i64,
    pub user: UserProfile,
}

/// Register, log in, refresh, log out, and token checks.
pub struct AccountService {
    jwt: JwtAuth,
    users: Arc<dyn UserStore>,
    revocations: Arc<dyn TokenRevocationStore>,
    clock: Arc<dyn Clock>,
    hub: Arc<Hub>,
    cfg: AccountConfig,
    hashing: Arc<Semaphore>,
    /// A real hash of a random password: logins for unknown users verify
    /// against it, so they take as long as logins with a wrong password.
    decoy_hash: String,
}

impl std::fmt::Debug for AccountService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountService")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Counts a refused token or login ([`crate::metrics::AUTH_FAILURES`]).
/// Store failures are not auth failures: they are counted as store errors.
fn count_auth_failure<T>(op: &'static str, r: &Result<T, ServiceError>) {
    if let Err(ServiceError::Auth(e)) = r {
        metrics::counter!(crate::metrics::AUTH_FAILURES, "op" => op, "reason" => e.metric_reason())
            .increment(1);
    }
}

fn invalid_credentials() -> ServiceError {
    ServiceError::Auth(AuthError::BadCredentials)
}

impl AccountService {
    pub fn new(
        jwt: JwtAuth,
        users: Arc<dyn UserStore>,
        revocations: Arc<dyn TokenRevocationStore>,
        clock: Arc<dyn Clock>,
        hub: Arc<Hub>,
        cfg: AccountConfig,
    ) -> Self {
        let decoy = hex::encode(rand::random::<[u8; 16]>());
        let decoy_hash = hash_password(&decoy).unwrap_or_default();
        Self {
            jwt,
            users,
            revocations,
            clock,
            hub,
            hashing: Arc::new(Semaphore::new(cfg.hash_concurrency.max(1))),
            cfg,
            decoy_hash,
        }
    }

    /// The token signer/verifier.
    pub fn jwt(&self) -> &JwtAuth {
        &self.jwt
    }

    /// Token times are wall-clock seconds: the JWT library checks `exp`
    /// against the system clock, not the service's (testable) one.
    fn now_secs(&self) -> i64 {
        SystemClock.now_ms().div_euclid(1000)
    }

    /// Checks an access token completely: signature, expiry, kind and
    /// revocation; `claimed_user` (may be empty) must match it when given.
    pub async fn authenticate(
        &self,
        token: &str,
        claimed_user: &str,
    ) -> Result<Identity, ServiceError> {
        let r = async {
            let id = self
                .jwt
                .verify_for(token, claimed_user)
                .map_err(ServiceError::Auth)?;
            self.check_revoked(&id).await?;
            Ok(id)
        }
        .await;
        count_auth_failure("token", &r);
        r
    }

    async fn check_revoked(&self, id: &Identity) -> Result<(), ServiceError> {
        if let Some(jti) = &id.token_id {
            if self.revocations.is_revoked(jti).await? {
                return Err(ServiceError::Auth(AuthError::Revoked));
            }
        }
        Ok(())
    }

    /// Creates user `username` with `password`. The username is the user id
    /// (`[A-Za-z0-9_-]`, at most 64 bytes); taken ids (registered or seen
    /// through a token) are a conflict.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        nickname: &str,
    ) -> Result<UserProfile, ServiceError> {
        let user = UserId::parse(username).map_err(|e| match e {
            im_core::IdError::BadChar => ServiceError::invalid(
                "username must be 1-64 characters of A-Z a-z 0-9 _ - : e-mail addresses and \
                 non-ASCII names are not user ids (the iOS SDK puts user ids unescaped into \
                 SQL and URL paths; see docs/protocol.md)",
            ),
            e => ServiceError::invalid(format!("username: {e}")),
        })?;
        if user.as_str() == crate::system::SYSTEM_SENDER {
            return Err(ServiceError::Conflict(
                "username is reserved (the sender of system notices)".into(),
            ));
        }
        check_password(password, self.cfg.min_password_len)?;
        let nickname = nickname.trim();
        crate::error::check_no_nul("nickname", nickname)?;
        if nickname.chars().count() > MAX_NICKNAME_CHARS {
            return Err(ServiceError::invalid(format!(
                "nickname is longer than {MAX_NICKNAME_CHARS} characters"
            )));
        }
        if self.users.exists(&user).await? {
            return Err(ServiceError::Conflict("username is taken".into()));
        }
        let hash = self.hash(password.to_owned()).await?;
        let now = self.clock.now_ms();
        let profile = UserProfile {
            user_id: user.as_str().to_owned(),
            nickname: if nickname.is_empty() {
                user.as_str().to_owned()
            } else {
                nickname.to_owned()
            },
            created_at: now,
            updated_at: now,
            ..UserProfile::default()
        };
        let account = Account {
            user_id: profile.user_id.clone(),
            password_hash: hash,
            created_at: now,
        };
        match self.users.create_account(&profile, &account).await {
            Ok(()) => Ok(profile),
            Err(StoreError::Conflict(_)) => Err(ServiceError::Conflict("username is taken".into())),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks `password` and signs a session on `platform`.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        platform: &str,
    ) -> Result<Session, ServiceError> {
        let r = self.login_unmetered(username, password, platform).await;
        count_auth_failure("login", &r);
        r
    }

    async fn login_unmetered(
        &self,
        username: &str,
        password: &str,
        platform: &str,
    ) -> Result<Session, ServiceError> {
        let platform = check_platform(platform)?;
        if password.len() > MAX_PASSWORD_LEN {
            return Err(invalid_credentials());
        }
        let account = match UserId::parse(username) {
            Ok(u) => self.users.account(u.as_str()).await?,
            Err(_) => None,
        };
        let stored = account
            .as_ref()
            .map_or_else(|| self.decoy_hash.clone(), |a| a.password_hash.clone());
        let matches = self.verify_hash(password.to_owned(), stored).await?;
        let Some(account) = account.filter(|_| matches) else {
            return Err(invalid_credentials());
        };
        let user = UserId::parse(account.user_id.as_str()).map_err(|_| {
            ServiceError::Store(StoreError::Other("stored user id is invalid".into()))
        })?;
        let now = self.clock.now_ms();
        self.users.touch(&user, now).await?;
        self.session_for(&user, platform).await
    }

    /// Exchanges a refresh token for a new session; the old refresh token is
    /// revoked (rotation: a stolen one works at most once).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session, ServiceError> {
        let r = self.refresh_unmetered(refresh_token).await;
        count_auth_failure("refresh", &r);
        r
    }

    async fn refresh_unmetered(&self, refresh_token: &str) -> Result<Session, ServiceError> {
        let id = self
            .jwt
            .verify_refresh(refresh_token)
            .map_err(ServiceError::Auth)?;
        self.check_revoked(&id).await?;
        if let Some(jti) = &id.token_id {
            self.revocations
                .revoke(jti, id.user.as_str(), id.expires_at)
                .await?;
        }
        let platform = id.platform.clone();
        self.session_for(&id.user, &platform).await
    }

    /// Revokes the access token `id` was authenticated with (and
    /// `refresh_token`, when given and it belongs to the same user), and
    /// closes this node's sockets that authenticated with it. Returns how
    /// many sockets were closed.
    pub async fn logout(
        &self,
        id: &Identity,
        refresh_token: Option<&str>,
    ) -> Result<usize, ServiceError> {
        if let Some(rt) = refresh_token.filter(|t| !t.is_empty()) {
            let rid = self.jwt.verify_refresh(rt).map_err(ServiceError::Auth)?;
            if rid.user != id.user {
                return Err(ServiceError::denied(
                    "the refresh token belongs to another user",
                ));
            }
            if let Some(jti) = &rid.token_id {
                self.revocations
                    .revoke(jti, rid.user.as_str(), rid.expires_at)
                    .await?;
            }
        }
        let Some(jti) = &id.token_id else {
            return Err(ServiceError::invalid(
                "this token has no id (jti) and cannot be revoked; let it expire",
            ));
        };
        self.revocations
            .revoke(jti, id.user.as_str(), id.expires_at)
            .await?;
        Ok(self.hub.close_token(&id.user, jti))
    }

    /// Forgets revocations of tokens that have expired anyway.
    pub async fn purge_expired(&self) -> Result<u64, ServiceError> {
        Ok(self.revocations.purge_expired(self.now_secs()).await?)
    }

    async fn session_for(&self, user: &UserId, platform: &str) -> Result<Session, ServiceError> {
        let now = self.now_secs();
        let ttl = secs(self.cfg.token_ttl);
        let rttl = secs(self.cfg.refresh_ttl);
        let sign = |e: AuthError| {
            tracing::error!(error = %e, "signing a token failed");
            ServiceError::Auth(e)
        };
        let token = self.jwt.issue(user, platform, now, ttl).map_err(sign)?;
        let refresh_token = self
            .jwt
            .issue_refresh(user, platform, now, rttl)
            .map_err(sign)?;
        let profile = self
            .users
            .profiles(&[user.as_str().to_owned()])
            .await?
            .into_iter()
            .next()
            .unwrap_or_else(|| UserProfile {
                user_id: user.as_str().to_owned(),
                nickname: user.as_str().to_owned(),
                ..UserProfile::default()
            });
        Ok(Session {
            token,
            expires_at: now.saturating_add(ttl),
            refresh_token,
            refresh_expires_at: now.saturating_add(rttl),
            user: profile,
        })
    }

    async fn hash(&self, password: String) -> Result<String, ServiceError> {
        let _permit = self.permit().await?;
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| ServiceError::Store(StoreError::Other(format!("hash task: {e}"))))?
    }

    async fn verify_hash(&self, password: String, hash: String) -> Result<bool, ServiceError> {
        let _permit = self.permit().await?;
        tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| ServiceError::Store(StoreError::Other(format!("verify task: {e}"))))
    }

    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ServiceError> {
        Arc::clone(&self.hashing)
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Store(StoreError::Unavailable("shutting down".into())))
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn check_password(password: &str, min: usize) -> Result<(), ServiceError> {
    if password.len() < min {
        return Err(ServiceError::invalid(format!(
            "password must be at least {min} bytes"
        )));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(ServiceError::invalid(format!(
            "password must be at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

fn check_platform(platform: &str) -> Result<&str, ServiceError> {
    if platform.len() > MAX_PLATFORM_LEN
        || !platform
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(ServiceError::invalid(format!(
            "platform must be at most {MAX_PLATFORM_LEN} bytes of [A-Za-z0-9_.-]"
        )));
    }
    Ok(platform)
}

/// An argon2id PHC string of `password` with a random salt.
fn hash_password(password: &str) -> Result<String, ServiceError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| ServiceError::Store(StoreError::Other(format!("salt: {e}"))))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Store(StoreError::Other(format!("hash: {e}"))))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salted");
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong horse", &a));
        assert!(!verify_password("correct horse", "not a phc string"));
    }

    #[test]
    fn password_and_platform_rules() {
        assert!(check_password("1234567", 8).is_err());
        assert!(check_password("12345678", 8).is_ok());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_LEN + 1), 8).is_err());
        assert!(check_platform("iOS").is_ok());
        assert!(check_platform("").is_ok());
        assert!(check_platform("a b").is_err());
        assert!(check_platform(&"x".repeat(33)).is_err());
    }
}
