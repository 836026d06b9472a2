//! Native TLS for the three listeners (rustls with the ring provider).
//!
//! [`CertStore`] loads a PEM certificate chain and its private key
//! (PKCS#8, PKCS#1 RSA or SEC1 EC), checks that they belong together, and
//! serves them to every handshake; [`CertStore::reload`] swaps in new files
//! without a restart (new handshakes get the new certificate, open
//! connections keep theirs). [`ServerTls`] holds the acceptors: ALPN
//! `http/1.1` for the HTTP API and WebSocket, none for TCP.
//!
//! The handshake runs in the connection's own task, never in an accept
//! loop, bounded by the handshake timeout and by shutdown; a failed one
//! closes that connection and is counted in
//! [`crate::metrics::TLS_HANDSHAKE_FAILURES`]. Errors name files, never
//! their contents.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::Transport;

/// Why a certificate or key could not be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read (missing, unreadable, a directory).
    #[error("cannot read the TLS {what} file {}: {source}", path.display())]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The certificate file holds no `CERTIFICATE` PEM section.
    #[error(
        "the TLS certificate file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        path.display()
    )]
    NoCertificate { path: PathBuf },
    /// The key file holds no private key PEM section.
    #[error(
        "the TLS key file {} holds no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
        path.display()
    )]
    NoKey { path: PathBuf },
    /// A PEM section is malformed.
    #[error("the TLS {what} file {} is not valid PEM: {reason}", path.display())]
    BadPem {
        what: &'static str,
        path: PathBuf,
        reason: &'static str,
    },
    /// The key's algorithm or encoding is not supported.
    #[error("the private key in {} is not usable: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    /// The first certificate could not be parsed.
    #[error("the first certificate in {} is not usable: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    /// The key is not the key of the first certificate of the chain.
    #[error(
        "the private key in {} does not match the certificate in {} (the first certificate must be the server's own)",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// rustls refused the configuration.
    #[error("cannot configure TLS: {0}")]
    Config(String),
}

/// The words of a PEM syntax error, without echoing any of the file.
fn pem_reason(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        pem::Error::NoItemsFound => "no section found",
        _ => "unreadable",
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and checks a certificate chain (first = the server's own) and its
/// private key from PEM files.
pub fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read("certificate", cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what: "certificate",
            path: cert_path.to_path_buf(),
            reason: pem_reason(&e),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key_pem = read("key", key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound if contains(&key_pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") => {
            TlsError::BadKey {
                path: key_path.to_path_buf(),
                reason: "it is encrypted; store it decrypted (openssl pkey -in <file> -out <new file>) with tight file permissions".to_owned(),
            }
        }
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: key_path.to_path_buf(),
        },
        other => TlsError::BadPem {
            what: "key",
            path: key_path.to_path_buf(),
            reason: pem_reason(&other),
        },
    })?;
    drop(key_pem);
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::BadKey {
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        // Unknown: the key type cannot say its public key; rustls accepts it too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        }),
        Err(e) => Err(TlsError::BadCertificate {
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// The server's certificate and key, read from two PEM files, served to
/// every handshake whatever its SNI, and replaceable at run time.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads the files (see [`load_certified_key`]).
    pub fn load(
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Result<Arc<Self>, TlsError> {
        let cert_path = cert_path.into();
        let key_path = key_path.into();
        let key = load_certified_key(&cert_path, &key_path)?;
        Ok(Arc::new(Self {
            cert_path,
            key_path,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again. On success new handshakes use the new
    /// certificate; on error the previous one stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load_certified_key(&self.cert_path, &self.key_path)?;
        *self.current.write() = Arc::new(key);
        Ok(())
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    pub fn key_path(&self) -> &Path {
        &self.key_path
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read()))
    }
}

/// The TLS acceptors of the listeners, cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    /// ALPN `http/1.1`: the HTTP API and WebSocket.
    http: TlsAcceptor,
    /// No ALPN: the TCP protocol.
    tcp: TlsAcceptor,
    handshake_timeout: Duration,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// ALPN id of HTTP/1.1.
const ALPN_HTTP1: &[u8] = b"http/1.1";

fn server_config(
    certs: Arc<dyn ResolvesServerCert>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

impl ServerTls {
    /// Acceptors over `certs` (a [`CertStore`], or any resolver of the
    /// embedder's); a handshake taking longer than `handshake_timeout`
    /// is dropped.
    pub fn new(
        certs: Arc<dyn ResolvesServerCert>,
        handshake_timeout: Duration,
    ) -> Result<Self, TlsError> {
        let http = server_config(Arc::clone(&certs), &[ALPN_HTTP1])?;
        let tcp = server_config(certs, &[])?;
        Ok(Self {
            http: TlsAcceptor::from(Arc::new(http)),
            tcp: TlsAcceptor::from(Arc::new(tcp)),
            handshake_timeout,
        })
    }

    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The handshake of an HTTP or WebSocket connection (ALPN `http/1.1`).
    pub(crate) async fn accept_http(
        &self,
        transport: &Transport,
        stream: TcpStream,
        label: &'static str,
    ) -> Option<TlsStream<TcpStream>> {
        self.accept(&self.http, transport, stream, label).await
    }

    /// The handshake of a TCP-protocol connection.
    pub(crate) async fn accept_tcp(
        &self,
        transport: &Transport,
        stream: TcpStream,
    ) -> Option<TlsStream<TcpStream>> {
        self.accept(&self.tcp, transport, stream, "tcp").await
    }

    async fn accept(
        &self,
        acceptor: &TlsAcceptor,
        transport: &Transport,
        stream: TcpStream,
        label: &'static str,
    ) -> Option<TlsStream<TcpStream>> {
        let peer = stream.peer_addr().ok();
        let handshake = tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream));
        let outcome = tokio::select! {
            () = transport.shutdown.cancelled() => return None,
            r = handshake => r,
        };
        let reason = match outcome {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(e)) => {
                tracing::debug!(?peer, transport = label, error = %e, "TLS handshake failed");
                // rustls reports what the peer sent (not TLS, a bad
                // message, an alert such as "unknown CA") as InvalidData.
                if e.kind() == io::ErrorKind::InvalidData {
                    "protocol"
                } else {
                    "io"
                }
            }
            Err(_) => {
                tracing::debug!(?peer, transport = label, "TLS handshake timed out");
                "timeout"
            }
        };
        crate::metrics::tls_handshake_failed(label, reason);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    #[test]
    fn loads_pkcs1_pkcs8_and_sec1_keys() {
        for (cert, key) in [
            ("rsa.crt", "rsa-pkcs1.key"),
            ("rsa.crt", "rsa-pkcs8.key"),
            ("ec.crt", "ec-sec1.key"),
        ] {
            let k = load_certified_key(&data(cert), &data(key))
                .unwrap_or_else(|e| panic!("{cert} + {key}: {e}"));
            assert_eq!(k.cert.len(), 1, "{cert}");
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let e = load_certified_key(&data("rsa.crt"), &data("ec-sec1.key")).unwrap_err();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("ec-sec1.key")
                && text.contains("rsa.crt")
                && text.contains("does not match"),
            "{text}"
        );
    }

    #[test]
    fn swapped_missing_and_empty_files_name_the_file() {
        // The key file given as the certificate: no certificate in it.
        let e = load_certified_key(&data("ec-sec1.key"), &data("ec-sec1.key")).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
        assert!(e.to_string().contains("ec-sec1.key"), "{e}");
        // The certificate given as the key: no key in it.
        let e = load_certified_key(&data("ec.crt"), &data("ec.crt")).unwrap_err();
        assert!(matches!(e, TlsError::NoKey { .. }), "{e:?}");
        assert!(e.to_string().contains("ec.crt"), "{e}");
        let e = load_certified_key(&data("nope.crt"), &data("ec-sec1.key")).unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::Read {
                    what: "certificate",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("nope.crt"), "{e}");
        let e = load_certified_key(&data("ec.crt"), &data("nope.key")).unwrap_err();
        assert!(matches!(e, TlsError::Read { what: "key", .. }), "{e:?}");
        assert!(e.to_string().contains("nope.key"), "{e}");
    }

    #[test]
    fn an_encrypted_key_is_named_as_such() {
        let e = load_certified_key(&data("ec.crt"), &data("ec-encrypted.key")).unwrap_err();
        assert!(matches!(e, TlsError::BadKey { .. }), "{e:?}");
        assert!(e.to_string().contains("encrypted"), "{e}");
    }

    #[test]
    fn broken_pem_is_refused_without_echoing_the_key() {
        let dir = std::env::temp_dir().join(format!("im-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("broken.key");
        let secret = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg";
        std::fs::write(
            &key,
            format!("-----BEGIN PRIVATE KEY-----\n{secret}!!\n-----END PRIVATE KEY-----\n"),
        )
        .unwrap();
        let e = load_certified_key(&data("ec.crt"), &key).unwrap_err();
        assert!(matches!(e, TlsError::BadPem { what: "key", .. }), "{e:?}");
        let text = format!("{e} {e:?}");
        assert!(!text.contains(secret), "{text}");
        // A section without its END line.
        std::fs::write(&key, format!("-----BEGIN PRIVATE KEY-----\n{secret}\n")).unwrap();
        let e = load_certified_key(&data("ec.crt"), &key).unwrap_err();
        assert!(matches!(e, TlsError::BadPem { .. }), "{e:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reload_keeps_the_old_certificate_on_error() {
        let dir = std::env::temp_dir().join(format!("im-tls-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::copy(data("ec.crt"), &cert).unwrap();
        std::fs::copy(data("ec-sec1.key"), &key).unwrap();
        let store = CertStore::load(&cert, &key).unwrap();
        let before = store.current.read().cert.clone();
        // Half-replaced files (new certificate, old key): refused, old kept.
        std::fs::copy(data("rsa.crt"), &cert).unwrap();
        assert!(matches!(store.reload(), Err(TlsError::KeyMismatch { .. })));
        assert_eq!(store.current.read().cert, before);
        // Both replaced: the new pair is served.
        std::fs::copy(data("rsa-pkcs1.key"), &key).unwrap();
        store.reload().unwrap();
        assert_ne!(store.current.read().cert, before);
        assert!(!format!("{store:?}").contains("BEGIN"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
