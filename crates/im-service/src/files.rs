//! File uploads and downloads: the size limit, who may upload, content-type
//! sniffing, hashing, and the public URL of a file. Bodies go through the
//! [`FileStore`] port chunk by chunk; nothing buffers a whole file.
//!
//! Anonymous uploads (what the SDK's `IMFileManager.uploadFile` sends) are
//! bounded three ways ([`AnonymousLimits`]): uploads per minute and bytes
//! per window from one client address (governor buckets; IPv6 counted per
//! /64), and the bytes all *pending* anonymous files hold together (each
//! counted as at least [`MIN_CHARGE`]). A pending file is one no stored
//! message references yet: [`FileRefs::note`] (called after a send is
//! stored) finds file ids in the content and a background task marks them
//! referenced in the store; [`FileService::sweep_anonymous`] (run
//! periodically by the server) deletes pending files older than the TTL.
//! Authenticated uploads are owned by their uploader and never pending.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use im_core::files::FILE_ID_LEN;
use im_core::ports::{Clock, StoreResult, SystemClock};
use im_core::{
    ByteStream, FileId, FileMeta, FileStore, FileWriter, PendingFile, StoreError, UserId,
};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// How many leading bytes are kept for content sniffing.
const SNIFF_BYTES: usize = 8 * 1024;
/// Longest original file name kept (characters).
const MAX_NAME_CHARS: usize = 255;
/// The type of anything that is not recognised.
pub const OCTET_STREAM: &str = "application/octet-stream";
/// The least a pending file counts against
/// [`AnonymousLimits::max_pending_bytes`] (its blocks, sidecar and marker),
/// so many tiny files cannot slip under the cap.
pub const MIN_CHARGE: u64 = 4 * 1024;
/// Most file ids taken from one message.
pub const MAX_REFS_PER_MESSAGE: usize = 16;
/// References waiting for the marking task.
const REF_QUEUE: usize = 4096;

/// Limits of anonymous uploads. A zero switches that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnonymousLimits {
    /// A pending (unreferenced) anonymous file is deleted by the first
    /// sweep this long after its upload.
    pub ttl: Duration,
    /// Uploads started per minute from one client address (burst: the same).
    pub uploads_per_minute: u32,
    /// Bytes one client address may upload per `window` (a token bucket
    /// holding that much, refilled over the window).
    pub bytes_per_window: u64,
    pub window: Duration,
    /// Bytes all pending anonymous files may hold together.
    pub max_pending_bytes: u64,
}

impl Default for AnonymousLimits {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            uploads_per_minute: 60,
            bytes_per_window: 256 * 1024 * 1024,
            window: Duration::from_secs(3600),
            max_pending_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// Settings of the file use cases.
#[derive(Debug, Clone)]
pub struct FilesConfig {
    /// Largest body accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Whether uploads without a token are accepted (the SDK's
    /// `IMFileManager.uploadFile` sends none); their owner is empty.
    pub anonymous_upload: bool,
    /// Base of the returned URLs (`<base>/<file_id>`); `None` = `/files/<file_id>`.
    pub public_base_url: Option<String>,
    /// Limits of anonymous uploads.
    pub anonymous: AnonymousLimits,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 100 * 1024 * 1024,
            anonymous_upload: false,
            public_base_url: None,
            anonymous: AnonymousLimits::default(),
        }
    }
}

/// Why a file operation failed.
#[derive(Debug, Error)]
pub enum FileError {
    /// An upload without a token while anonymous uploads are off.
    #[error("uploads need Authorization: Bearer <token>")]
    AuthRequired,
    /// Nothing to store.
    #[error("empty upload")]
    Empty,
    /// The body is larger than the limit.
    #[error("file larger than {max} bytes")]
    TooLarge { max: u64 },
    /// Too many anonymous uploads from this address.
    #[error("too many uploads from this address; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// This address has uploaded its anonymous bytes for the window.
    #[error(
        "this address may upload {limit} bytes per {window_secs} s without a token; retry in {retry_after_secs} s"
    )]
    QuotaExceeded {
        limit: u64,
        window_secs: u64,
        retry_after_secs: u64,
    },
    /// Pending anonymous files hold all the space they may.
    #[error("no room for more anonymous uploads; retry later or upload with a token")]
    StorageFull,
    /// The store failed; the cause is logged, never shown to clients.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FileError {
    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::AuthRequired => 401,
            Self::Empty => 400,
            Self::TooLarge { .. } => 413,
            Self::RateLimited { .. } | Self::QuotaExceeded { .. } => 429,
            Self::StorageFull => 507,
            Self::Store(e) if e.is_retryable() => 503,
            Self::Store(_) => 500,
        }
    }

    /// A short, stable, machine-readable name of the kind.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::AuthRequired => "unauthorized",
            Self::Empty => "empty_file",
            Self::TooLarge { .. } => "payload_too_large",
            Self::RateLimited { .. } => "upload_rate_limited",
            Self::QuotaExceeded { .. } => "upload_quota_exceeded",
            Self::StorageFull => "insufficient_storage",
            Self::Store(e) if e.is_retryable() => "unavailable",
            Self::Store(_) => "internal",
        }
    }

    /// Seconds a client should wait before retrying (`Retry-After`).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs }
            | Self::QuotaExceeded {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The message to show a client.
    pub fn public_message(&self) -> String {
        match self {
            Self::Store(e) if e.is_retryable() => "storage temporarily unavailable, retry".into(),
            Self::Store(_) => "storage error".into(),
            other => other.to_string(),
        }
    }
}

/// Uploads and downloads of files.
pub struct FileService {
    store: Arc<dyn FileStore>,
    clock: Arc<dyn Clock>,
    cfg: FilesConfig,
    anon: Arc<Anonymous>,
    /// With [`Self::with_reference_tracking`]: the marking task's queue.
    refs: FileRefs,
}

impl std::fmt::Debug for FileService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileService")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// The per-address buckets and the book of pending bytes.
struct Anonymous {
    uploads: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Cells are KiB.
    bytes: Option<DefaultKeyedRateLimiter<IpAddr>>,
    limits: AnonymousLimits,
    book: Mutex<Book>,
}

/// What pending anonymous files hold, as this node knows it: the files
/// listed by the last sweep and committed since, plus uploads in progress.
#[derive(Debug, Default)]
struct Book {
    /// Pending file -> (bytes charged, ms when it entered the book).
    files: HashMap<FileId, (u64, i64)>,
    /// Sum of `files`' charges.
    held: u64,
    /// Bytes reserved by uploads in progress.
    reserved: u64,
}

impl Book {
    fn remove(&mut self, id: &FileId) {
        if let Some((charge, _)) = self.files.remove(id) {
            self.held = self.held.saturating_sub(charge);
        }
    }
}

/// The key of a client address: IPv4 as is, IPv6 by its /64 (one host
/// usually holds a whole /64).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// What a pending file of `size` bytes counts against the cap.
fn charge_of(size: u64) -> u64 {
    size.max(MIN_CHARGE)
}

/// Whether a pending file uploaded at `created_at` is past `ttl` at `now` (ms).
pub fn is_expired(file: &PendingFile, now_ms: i64, ttl: Duration) -> bool {
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    file.created_at.saturating_add(ttl) <= now_ms
}

fn wait_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Anonymous {
    fn new(limits: AnonymousLimits) -> Self {
        let uploads = NonZeroU32::new(limits.uploads_per_minute)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        let kib = u32::try_from(limits.bytes_per_window.div_ceil(1024)).unwrap_or(u32::MAX);
        let bytes = NonZeroU32::new(kib).and_then(|kib| {
            let period = limits.window.checked_div(kib.get())?;
            Some(RateLimiter::keyed(
                Quota::with_period(period.max(Duration::from_nanos(1)))?.allow_burst(kib),
            ))
        });
        Self {
            uploads,
            bytes,
            limits,
            book: Mutex::new(Book::default()),
        }
    }

    fn refuse(&self, e: FileError) -> FileError {
        metrics::counter!(crate::metrics::FILE_UPLOADS_REFUSED, "reason" => e.reason())
            .increment(1);
        e
    }

    /// Counts the start of an upload from `key`.
    fn start(&self, key: Option<IpAddr>) -> Result<(), FileError> {
        let (Some(l), Some(key)) = (&self.uploads, key) else {
            return Ok(());
        };
        l.check_key(&key).map_err(|not_until| {
            self.refuse(FileError::RateLimited {
                retry_after_secs: wait_secs(not_until.wait_time_from(l.clock().now())),
            })
        })
    }

    /// Charges `more` KiB to `key`'s byte bucket.
    fn charge_address(&self, key: Option<IpAddr>, kib: u64) -> Result<(), FileError> {
        let (Some(l), Some(key)) = (&self.bytes, key) else {
            return Ok(());
        };
        let Some(n) = u32::try_from(kib).ok().and_then(NonZeroU32::new) else {
            return Ok(());
        };
        let refused = |retry_after_secs| FileError::QuotaExceeded {
            limit: self.limits.bytes_per_window,
            window_secs: self.limits.window.as_secs(),
            retry_after_secs,
        };
        match l.check_key_n(&key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(self.refuse(refused(wait_secs(
                not_until.wait_time_from(l.clock().now()),
            )))),
            // More than the whole window's allowance at once: no wait helps.
            Err(_) => Err(FileError::TooLarge {
                max: self.limits.bytes_per_window,
            }),
        }
    }

    /// Reserves `more` bytes of the pending cap.
    fn reserve(&self, more: u64) -> Result<(), FileError> {
        let mut book = self.book.lock();
        let cap = self.limits.max_pending_bytes;
        let total = book.held.saturating_add(book.reserved).saturating_add(more);
        if cap > 0 && total > cap {
            drop(book);
            return Err(self.refuse(FileError::StorageFull));
        }
        book.reserved = book.reserved.saturating_add(more);
        Ok(())
    }

    fn release(&self, bytes: u64) {
        let mut book = self.book.lock();
        book.reserved = book.reserved.saturating_sub(bytes);
    }

    /// Turns a reservation into a pending file.
    fn hold(&self, id: FileId, reserved: u64, size: u64, now_ms: i64) {
        let mut book = self.book.lock();
        book.reserved = book.reserved.saturating_sub(reserved);
        let charge = charge_of(size);
        book.held = book.held.saturating_add(charge);
        if let Some((old, _)) = book.files.insert(id, (charge, now_ms)) {
            book.held = book.held.saturating_sub(old);
        }
    }
}

/// What pending anonymous files hold, as this node counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingUsage {
    /// Pending files.
    pub files: usize,
    /// Bytes charged for them (each at least [`MIN_CHARGE`]), plus uploads
    /// in progress.
    pub bytes: u64,
}

/// What one [`FileService::sweep_anonymous`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepReport {
    /// Pending files deleted as expired.
    pub expired: usize,
    /// Pending files left.
    pub pending: usize,
}

impl FileService {
    pub fn new(store: Arc<dyn FileStore>, clock: Arc<dyn Clock>, cfg: FilesConfig) -> Self {
        let anon = Arc::new(Anonymous::new(cfg.anonymous));
        Self {
            store,
            clock,
            cfg,
            anon,
            refs: FileRefs::none(),
        }
    }

    /// Starts the task that marks referenced files in the store and
    /// returns the handle the messaging service notes stored messages with
    /// ([`crate::MessagingService::with_file_refs`]). The task ends when
    /// every handle (this service's included) is dropped. Needs a Tokio
    /// runtime.
    #[must_use]
    pub fn with_reference_tracking(mut self) -> (Self, FileRefs) {
        let (tx, rx) = mpsc::channel(REF_QUEUE);
        tokio::spawn(mark_references(
            rx,
            Arc::clone(&self.store),
            Arc::clone(&self.anon),
        ));
        let refs = FileRefs { tx: Some(tx) };
        self.refs = refs.clone();
        (self, refs)
    }

    /// Resolves once every reference noted before the call has been
    /// marked in the store (immediately without reference tracking).
    pub async fn references_settled(&self) {
        self.refs.settled().await;
    }

    /// A service without storage: uploads fail with a store error, no file
    /// exists (for tests and tools that build [`crate::Services`] by hand).
    pub fn unconfigured() -> Self {
        Self::new(
            Arc::new(NoFiles),
            Arc::new(SystemClock),
            FilesConfig::default(),
        )
    }

    pub fn config(&self) -> &FilesConfig {
        &self.cfg
    }

    /// Refuses a body whose announced length is over the limit, before
    /// reading any of it.
    pub fn check_length(&self, announced: u64) -> Result<(), FileError> {
        if announced > self.cfg.max_upload_bytes {
            return Err(FileError::TooLarge {
                max: self.cfg.max_upload_bytes,
            });
        }
        Ok(())
    }

    /// Starts an upload by `owner` (`None`: no token was given) from client
    /// address `from` (`None`: unknown, no per-address limits). `name` is
    /// the client's file name, kept as metadata only. An anonymous upload
    /// is counted against the address's upload rate here, and reserves
    /// [`MIN_CHARGE`] of the pending cap.
    pub async fn begin(
        &self,
        owner: Option<&UserId>,
        from: Option<IpAddr>,
        name: Option<&str>,
    ) -> Result<Upload, FileError> {
        let (owner, anon) = match owner {
            Some(u) => (u.as_str().to_owned(), None),
            None if self.cfg.anonymous_upload => {
                let key = from.map(address_key);
                self.anon.start(key)?;
                self.anon.reserve(MIN_CHARGE)?;
                let charge = AnonCharge {
                    anon: Arc::clone(&self.anon),
                    key,
                    charged: 0,
                    reserved: MIN_CHARGE,
                };
                (String::new(), Some(charge))
            }
            None => return Err(FileError::AuthRequired),
        };
        let writer = self.store.begin().await?;
        Ok(Upload {
            writer: Some(writer),
            hasher: Sha256::new(),
            size: 0,
            head: Vec::new(),
            max: self.cfg.max_upload_bytes,
            owner,
            name: name.and_then(clean_name),
            clock: Arc::clone(&self.clock),
            anon,
        })
    }

    /// The metadata of file `id`; `None` for an unknown or malformed id.
    pub async fn meta(&self, id: &str) -> Result<Option<FileMeta>, FileError> {
        let Some(id) = FileId::parse(id) else {
            return Ok(None);
        };
        Ok(self.store.meta(&id).await?)
    }

    /// Bytes `start..=end_inclusive` of the file (`None`: it vanished).
    pub async fn read(
        &self,
        meta: &FileMeta,
        start: u64,
        end_inclusive: u64,
    ) -> Result<Option<ByteStream>, FileError> {
        Ok(self.store.read(&meta.file_id, start, end_inclusive).await?)
    }

    /// The URL clients fetch file `id` from.
    pub fn url(&self, id: &FileId) -> String {
        match &self.cfg.public_base_url {
            Some(base) => format!("{}/{id}", base.trim_end_matches('/')),
            None => format!("/files/{id}"),
        }
    }

    /// What pending anonymous files hold, as this node counts it.
    pub fn pending_usage(&self) -> PendingUsage {
        let book = self.anon.book.lock();
        PendingUsage {
            files: book.files.len(),
            bytes: book.held.saturating_add(book.reserved),
        }
    }

    /// Deletes the pending anonymous files older than the TTL, and counts
    /// the pending bytes again from the store (so files of other nodes
    /// sharing the directory count too). Run at start-up and periodically.
    /// It forgets per-address buckets that have refilled.
    pub async fn sweep_anonymous(&self) -> Result<SweepReport, FileError> {
        for l in [&self.anon.uploads, &self.anon.bytes].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        let started = self.clock.now_ms();
        let listed = self.store.pending().await?;
        let mut kept = HashMap::with_capacity(listed.len());
        let mut expired = 0;
        for file in listed {
            if is_expired(&file, self.clock.now_ms(), self.cfg.anonymous.ttl) {
                if self.store.expire(&file.file_id).await? {
                    expired += 1;
                    metrics::counter!(crate::metrics::FILES_EXPIRED).increment(1);
                }
                continue;
            }
            kept.insert(file.file_id, (charge_of(file.size), started));
        }
        let mut book = self.anon.book.lock();
        // Files that entered the book while we listed stay in it.
        for (id, entry) in &book.files {
            if entry.1 >= started {
                kept.entry(id.clone()).or_insert(*entry);
            }
        }
        book.held = kept.values().map(|(c, _)| *c).sum();
        book.files = kept;
        Ok(SweepReport {
            expired,
            pending: book.files.len(),
        })
    }
}

/// The anonymous side of an upload: its address and what it has charged.
struct AnonCharge {
    anon: Arc<Anonymous>,
    key: Option<IpAddr>,
    /// Bytes charged to the address (rounded up to KiB when charged).
    charged: u64,
    /// Bytes reserved of the pending cap.
    reserved: u64,
}

impl AnonCharge {
    /// Makes sure `total` bytes are charged to the address and reserved.
    fn cover(&mut self, total: u64) -> Result<(), FileError> {
        if total > self.charged {
            let kib = total.div_ceil(1024) - self.charged.div_ceil(1024);
            self.anon.charge_address(self.key, kib)?;
            self.charged = total;
        }
        let need = charge_of(total);
        if need > self.reserved {
            self.anon.reserve(need - self.reserved)?;
            self.reserved = need;
        }
        Ok(())
    }
}

impl Drop for AnonCharge {
    fn drop(&mut self) {
        // An upload that never became a pending file gives its room back
        // (the address's bytes stay spent: they were received).
        if self.reserved > 0 {
            self.anon.release(self.reserved);
        }
    }
}

/// An upload in progress. Dropping it without [`finish`](Self::finish)
/// discards everything written.
pub struct Upload {
    writer: Option<Box<dyn FileWriter>>,
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
    max: u64,
    owner: String,
    name: Option<String>,
    clock: Arc<dyn Clock>,
    anon: Option<AnonCharge>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("size", &self.size)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Upload {
    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether this upload has no owner.
    pub fn is_anonymous(&self) -> bool {
        self.anon.is_some()
    }

    fn writer(&mut self) -> Result<&mut Box<dyn FileWriter>, FileError> {
        self.writer
            .as_mut()
            .ok_or_else(|| FileError::Store(StoreError::Other("upload already ended".into())))
    }

    /// Charges a body of `announced` bytes up front (its `Content-Length`),
    /// so an anonymous upload over a quota is refused before it is read.
    /// On error the upload has discarded itself.
    pub async fn expect(&mut self, announced: u64) -> Result<(), FileError> {
        if let Some(a) = &mut self.anon {
            if let Err(e) = a.cover(announced.min(self.max)) {
                self.discard().await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Appends a chunk. Going over the limit (or an anonymous quota)
    /// discards the upload.
    pub async fn push(&mut self, chunk: Bytes) -> Result<(), FileError> {
        let len = chunk.len() as u64;
        let size = self.size.saturating_add(len);
        if size > self.max {
            self.discard().await;
            return Err(FileError::TooLarge { max: self.max });
        }
        if let Some(a) = &mut self.anon {
            if let Err(e) = a.cover(size) {
                self.discard().await;
                return Err(e);
            }
        }
        if self.head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - self.head.len()).min(chunk.len());
            self.head
                .extend_from_slice(chunk.get(..take).unwrap_or_default());
        }
        self.hasher.update(&chunk);
        if let Err(e) = self.writer()?.write(chunk).await {
            self.discard().await;
            return Err(e.into());
        }
        self.size = size;
        Ok(())
    }

    /// Sniffs the type and commits the file.
    pub async fn finish(mut self) -> Result<FileMeta, FileError> {
        if self.size == 0 {
            self.discard().await;
            return Err(FileError::Empty);
        }
        let writer = self
            .writer
            .take()
            .ok_or_else(|| FileError::Store(StoreError::Other("upload already ended".into())))?;
        let meta = FileMeta {
            file_id: writer.file_id().clone(),
            owner: std::mem::take(&mut self.owner),
            size: self.size,
            content_type: sniff(&self.head).to_owned(),
            original_name: self.name.take(),
            created_at: self.clock.now_ms(),
            sha256: hex::encode(std::mem::take(&mut self.hasher).finalize()),
        };
        writer.commit(meta.clone()).await?;
        if let Some(mut a) = self.anon.take() {
            let reserved = std::mem::take(&mut a.reserved);
            a.anon
                .hold(meta.file_id.clone(), reserved, meta.size, meta.created_at);
        }
        Ok(meta)
    }

    /// Discards the upload and what was written.
    pub async fn abort(mut self) {
        self.discard().await;
    }

    async fn discard(&mut self) {
        if let Some(w) = self.writer.take() {
            w.abort().await;
        }
    }
}

/// What a byte is to [`file_ids_in`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum ByteClass {
    /// Not alphanumeric: ends a run.
    Separator,
    /// `[0-9a-f]`.
    Hex,
    /// Any other ASCII letter.
    Other,
}

fn class(b: u8) -> ByteClass {
    match b {
        b'0'..=b'9' | b'a'..=b'f' => ByteClass::Hex,
        b'g'..=b'z' | b'A'..=b'Z' => ByteClass::Other,
        _ => ByteClass::Separator,
    }
}

/// Finds the file ids a message content names: every run of exactly 32
/// lower-case hex digits between non-alphanumeric bytes (so
/// `http://h/files/<id>`, JSON-escaped `http:\/\/h\/files\/<id>` and a
/// bare `<id>` all count), at most [`MAX_REFS_PER_MESSAGE`], without
/// duplicates.
///
/// It probes every 32nd byte: an id covers 32 consecutive bytes, all hex,
/// so one probe lands in it; only a hex probe is looked at closer (its
/// run, which is then skipped). A 64 KiB text takes ~3 µs, a rich-media
/// content of 300 bytes ~0.1 µs (measured with `-O`); nothing is allocated
/// unless an id is found.
pub fn file_ids_in(content: &[u8]) -> Vec<FileId> {
    let at = |i: usize| content.get(i).map_or(ByteClass::Separator, |b| class(*b));
    let mut out: Vec<FileId> = Vec::new();
    let len = content.len();
    // Bytes before `done` belong to runs already looked at.
    let mut done = 0;
    let mut probe = 0;
    while probe < len {
        if at(probe) != ByteClass::Hex {
            probe += FILE_ID_LEN;
            continue;
        }
        let mut start = probe;
        while start > done && at(start - 1) != ByteClass::Separator {
            start -= 1;
        }
        let mut end = probe + 1;
        while end < len && at(end) != ByteClass::Separator {
            end += 1;
        }
        if end - start == FILE_ID_LEN {
            if let Some(id) = content
                .get(start..end)
                .and_then(|run| std::str::from_utf8(run).ok())
                .and_then(FileId::parse)
            {
                if !out.contains(&id) {
                    out.push(id);
                    if out.len() == MAX_REFS_PER_MESSAGE {
                        break;
                    }
                }
            }
        }
        done = end;
        probe = end + 1;
    }
    out
}

enum RefJob {
    Mark(FileId),
    Barrier(oneshot::Sender<()>),
}

/// The handle that notes file references of stored messages. Cheap to
/// clone; [`FileRefs::none`] notes nothing.
#[derive(Clone, Default)]
pub struct FileRefs {
    tx: Option<mpsc::Sender<RefJob>>,
}

impl std::fmt::Debug for FileRefs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRefs")
            .field("tracking", &self.tx.is_some())
            .finish()
    }
}

impl FileRefs {
    /// A handle that notes nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Queues the file ids in a stored message's `content` for marking.
    /// Never waits: a scan of the bytes and, only when ids are found, a
    /// queue push (a full queue hands the push to a task of its own).
    pub fn note(&self, content: &[u8]) {
        let Some(tx) = &self.tx else { return };
        for id in file_ids_in(content) {
            match tx.try_send(RefJob::Mark(id)) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(job)) => {
                    metrics::counter!(crate::metrics::FILE_REFS_QUEUE_FULL).increment(1);
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        let tx = tx.clone();
                        rt.spawn(async move {
                            let _ = tx.send(job).await;
                        });
                    }
                }
            }
        }
    }

    /// Resolves once the references queued before the call are marked.
    pub async fn settled(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(RefJob::Barrier(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// The marking task: one store call per noted id (a pending marker to
/// delete, or nothing), ids seen recently skipped.
async fn mark_references(
    mut rx: mpsc::Receiver<RefJob>,
    store: Arc<dyn FileStore>,
    anon: Arc<Anonymous>,
) {
    // Ids already marked or found not pending, forgotten in bulk when full.
    let mut seen: HashSet<FileId> = HashSet::new();
    while let Some(job) = rx.recv().await {
        let id = match job {
            RefJob::Mark(id) => id,
            RefJob::Barrier(done) => {
                let _ = done.send(());
                continue;
            }
        };
        if seen.contains(&id) {
            continue;
        }
        match store.mark_referenced(&id).await {
            Ok(marked) => {
                if marked {
                    metrics::counter!(crate::metrics::FILES_REFERENCED).increment(1);
                }
                anon.book.lock().remove(&id);
                if seen.len() >= REF_QUEUE {
                    seen.clear();
                }
                seen.insert(id);
            }
            Err(e) => {
                tracing::warn!(file_id = %id, error = %e, "could not mark a file referenced; it may expire");
            }
        }
    }
}

/// The content type of a body starting with `head`, from its bytes only
/// (the client's label is not trusted): what `infer` recognises, else
/// `application/octet-stream`.
pub fn sniff(head: &[u8]) -> &'static str {
    infer::get(head).map_or(OCTET_STREAM, |t| t.mime_type())
}

/// The client's file name reduced to a harmless label: its last path
/// component, without control characters, at most 255 characters.
fn clean_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    (!cleaned.is_empty() && cleaned != "." && cleaned != "..").then(|| cleaned.to_owned())
}

/// The store of [`FileService::unconfigured`].
struct NoFiles;

#[async_trait]
impl FileStore for NoFiles {
    async fn begin(&self) -> StoreResult<Box<dyn FileWriter>> {
        Err(StoreError::Other(
            "file storage is not configured on this server".into(),
        ))
    }

    async fn meta(&self, _: &FileId) -> StoreResult<Option<FileMeta>> {
        Ok(None)
    }

    async fn read(&self, _: &FileId, _: u64, _: u64) -> StoreResult<Option<ByteStream>> {
        Ok(None)
    }

    async fn mark_referenced(&self, _: &FileId) -> StoreResult<bool> {
        Ok(false)
    }

    async fn pending(&self) -> StoreResult<Vec<PendingFile>> {
        Ok(Vec::new())
    }

    async fn expire(&self, _: &FileId) -> StoreResult<bool> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_ignores_labels_and_defaults_to_octet_stream() {
        let png = [
            0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d,
        ];
        assert_eq!(sniff(&png), "image/png");
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"), "image/jpeg");
        assert_eq!(sniff(b"just some words"), OCTET_STREAM);
        assert_eq!(sniff(b""), OCTET_STREAM);
        assert_eq!(
            sniff(b"<!DOCTYPE html><html><script>alert(1)</script></html>"),
            "text/html"
        );
    }

    #[test]
    fn names_are_reduced_to_a_label() {
        assert_eq!(clean_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(clean_name("C:\\x\\a b.png").as_deref(), Some("a b.png"));
        assert_eq!(clean_name("a\r\nb.txt").as_deref(), Some("ab.txt"));
        assert_eq!(clean_name("dir/"), None);
        assert_eq!(clean_name(".."), None);
        assert_eq!(clean_name(&"x".repeat(1000)).map(|n| n.len()), Some(255));
    }

    #[test]
    fn urls_follow_the_public_base() {
        let id = FileId::from_u128(0xab);
        let mut s = FileService::unconfigured();
        assert_eq!(s.url(&id), format!("/files/{id}"));
        s.cfg.public_base_url = Some("https://cdn.example.com/files/".into());
        assert_eq!(s.url(&id), format!("https://cdn.example.com/files/{id}"));
    }

    #[tokio::test]
    async fn uploads_need_an_owner_unless_anonymous() {
        let s = FileService::unconfigured();
        assert!(matches!(
            s.begin(None, None, None).await,
            Err(FileError::AuthRequired)
        ));
        let u = UserId::parse("alice").unwrap();
        // Past the policy, the unconfigured store refuses.
        assert!(matches!(
            s.begin(Some(&u), None, None).await,
            Err(FileError::Store(_))
        ));
        assert!(s.check_length(100 * 1024 * 1024).is_ok());
        assert!(matches!(
            s.check_length(100 * 1024 * 1024 + 1),
            Err(FileError::TooLarge { .. })
        ));
        assert_eq!(s.meta("../etc").await.unwrap(), None);
    }

    /// (bytes written, committed meta, aborted)
    type Shared = Arc<parking_lot::Mutex<(Vec<u8>, Option<FileMeta>, bool)>>;

    /// A store keeping one upload in memory, recording what happened.
    #[derive(Default)]
    struct OneFile {
        state: Shared,
    }

    struct OneWriter(Shared, FileId);

    #[async_trait]
    impl FileWriter for OneWriter {
        fn file_id(&self) -> &FileId {
            &self.1
        }
        async fn write(&mut self, chunk: Bytes) -> StoreResult<()> {
            self.0.lock().0.extend_from_slice(&chunk);
            Ok(())
        }
        async fn commit(self: Box<Self>, meta: FileMeta) -> StoreResult<()> {
            self.0.lock().1 = Some(meta);
            Ok(())
        }
        async fn abort(self: Box<Self>) {
            let mut s = self.0.lock();
            s.0.clear();
            s.2 = true;
        }
    }

    #[async_trait]
    impl FileStore for OneFile {
        async fn begin(&self) -> StoreResult<Box<dyn FileWriter>> {
            Ok(Box::new(OneWriter(
                Arc::clone(&self.state),
                FileId::from_u128(42),
            )))
        }
        async fn meta(&self, _: &FileId) -> StoreResult<Option<FileMeta>> {
            Ok(self.state.lock().1.clone())
        }
        async fn read(&self, _: &FileId, _: u64, _: u64) -> StoreResult<Option<ByteStream>> {
            Ok(None)
        }
        async fn mark_referenced(&self, _: &FileId) -> StoreResult<bool> {
            Ok(false)
        }
        async fn pending(&self) -> StoreResult<Vec<PendingFile>> {
            Ok(Vec::new())
        }
        async fn expire(&self, _: &FileId) -> StoreResult<bool> {
            Ok(false)
        }
    }

    struct Fixed;
    impl Clock for Fixed {
        fn now_ms(&self) -> i64 {
            1_234
        }
    }

    fn service(store: &OneFile, max: u64) -> FileService {
        FileService::new(
            Arc::new(OneFile {
                state: Arc::clone(&store.state),
            }),
            Arc::new(Fixed),
            FilesConfig {
                max_upload_bytes: max,
                anonymous_upload: true,
                public_base_url: None,
                anonymous: AnonymousLimits::default(),
            },
        )
    }

    #[tokio::test]
    async fn an_upload_is_hashed_sniffed_and_committed() {
        let store = OneFile::default();
        let s = service(&store, 1_000);
        let mut up = s.begin(None, None, Some("../pic.txt")).await.unwrap();
        up.push(Bytes::from_static(b"\x89PNG\r\n")).await.unwrap();
        up.push(Bytes::from_static(b"\x1a\n rest")).await.unwrap();
        let meta = up.finish().await.unwrap();
        assert_eq!(meta.content_type, "image/png");
        assert_eq!(meta.size, 13);
        assert_eq!(meta.owner, "");
        assert_eq!(meta.created_at, 1_234);
        assert_eq!(meta.original_name.as_deref(), Some("pic.txt"));
        assert_eq!(
            meta.sha256,
            hex::encode(Sha256::digest(b"\x89PNG\r\n\x1a\n rest"))
        );
        assert_eq!(store.state.lock().1.as_ref(), Some(&meta));
    }

    #[tokio::test]
    async fn too_large_or_empty_uploads_are_discarded() {
        let store = OneFile::default();
        let s = service(&store, 10);
        let mut up = s.begin(None, None, None).await.unwrap();
        up.push(Bytes::from_static(b"0123456789")).await.unwrap();
        let e = up.push(Bytes::from_static(b"x")).await.unwrap_err();
        assert!(matches!(e, FileError::TooLarge { max: 10 }));
        assert_eq!(e.http_status(), 413);
        assert_eq!(e.reason(), "payload_too_large");
        {
            let st = store.state.lock();
            assert!(st.0.is_empty() && st.1.is_none() && st.2, "aborted");
        }
        let up = s.begin(None, None, None).await.unwrap();
        assert!(matches!(up.finish().await, Err(FileError::Empty)));
        assert!(store.state.lock().1.is_none());
    }

    #[test]
    fn file_ids_are_found_in_urls_escaped_json_and_text() {
        let a = "0123456789abcdef0123456789abcdef";
        let b = "fedcba9876543210fedcba9876543210";
        let json = format!(
            r#"{{"url":"http:\/\/h:8080\/files\/{a}","thumbnailUrl":"https://cdn/x/{b}?v=1","size":3}}"#
        );
        let ids: Vec<String> = file_ids_in(json.as_bytes())
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(ids, vec![a.to_owned(), b.to_owned()]);
        assert_eq!(file_ids_in(a.as_bytes()).len(), 1, "the whole content");
        assert_eq!(file_ids_in(format!("{a} {a}").as_bytes()).len(), 1, "once");
        for not_an_id in [
            format!("{a}0"),                                   // 33 characters
            format!("x{a}"),                                   // part of a longer word
            "0123456789ABCDEF0123456789abcdef".to_owned(),     // upper case
            "0123456789abcdef0123456789abcdeg".to_owned(),     // not hex
            "123e4567-e89b-12d3-a456-426614174000".to_owned(), // a UUID
        ] {
            assert!(file_ids_in(not_an_id.as_bytes()).is_empty(), "{not_an_id}");
        }
        let many: String = (0..40u128)
            .map(|i| format!("{} ", FileId::from_u128(i)))
            .collect();
        assert_eq!(file_ids_in(many.as_bytes()).len(), MAX_REFS_PER_MESSAGE);
        assert!(file_ids_in(b"").is_empty());
        assert!(file_ids_in(&[0xff, 0xfe, b'a']).is_empty());
    }

    /// The probing scan finds what a plain split finds, on random contents
    /// made of hex, other letters and separators with ids planted anywhere.
    #[test]
    fn the_probing_scan_agrees_with_a_plain_split() {
        fn naive(content: &[u8]) -> Vec<FileId> {
            let mut out = Vec::new();
            for run in content.split(|b| !b.is_ascii_alphanumeric()) {
                let id = std::str::from_utf8(run).ok().and_then(FileId::parse);
                if let Some(id) = id {
                    if !out.contains(&id) && out.len() < MAX_REFS_PER_MESSAGE {
                        out.push(id);
                    }
                }
            }
            out
        }
        let alphabet = b"0123456789abcdefgzAZ/ \\\"\xc3";
        for round in 0..3000u32 {
            let len = rand::random_range(0..400usize);
            let mut c: Vec<u8> = (0..len)
                .map(|_| alphabet[rand::random_range(0..alphabet.len())])
                .collect();
            for _ in 0..rand::random_range(0..4usize) {
                let id = FileId::from_u128(rand::random::<u128>());
                let at = rand::random_range(0..=c.len());
                let cut = rand::random_range(30..=32usize);
                c.splice(at..at, id.as_str().bytes().take(cut));
            }
            assert_eq!(
                file_ids_in(&c),
                naive(&c),
                "round {round}: {:?}",
                String::from_utf8_lossy(&c)
            );
        }
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(address_key(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), v4);
    }

    #[test]
    fn expiry_is_created_at_plus_ttl() {
        let f = PendingFile {
            file_id: FileId::from_u128(1),
            size: 1,
            created_at: 1_000,
        };
        assert!(!is_expired(&f, 1_999, Duration::from_secs(1)));
        assert!(is_expired(&f, 2_000, Duration::from_secs(1)));
        assert!(is_expired(&f, 1_000, Duration::ZERO));
        assert!(!is_expired(&f, i64::MAX - 1, Duration::MAX));
    }

    #[tokio::test]
    async fn anonymous_limits_count_per_address_and_in_total() {
        let store = OneFile::default();
        let mut s = service(&store, 1 << 20);
        s.anon = Arc::new(Anonymous::new(AnonymousLimits {
            ttl: Duration::from_secs(60),
            uploads_per_minute: 2,
            bytes_per_window: 10 * 1024,
            window: Duration::from_secs(60),
            max_pending_bytes: 12 * 1024,
        }));
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        // 8 KiB of 10 from `one`; 2 more KiB would fit, 3 do not.
        let mut up = s.begin(None, Some(one), None).await.unwrap();
        up.expect(8 * 1024).await.unwrap();
        assert_eq!(s.pending_usage().bytes, 8 * 1024, "reserved");
        let mut up2 = s.begin(None, Some(one), None).await.unwrap();
        let e = up2.expect(3 * 1024).await.unwrap_err();
        assert!(matches!(
            e,
            FileError::QuotaExceeded {
                limit: 10240,
                window_secs: 60,
                ..
            }
        ));
        assert_eq!(
            (e.http_status(), e.reason()),
            (429, "upload_quota_exceeded")
        );
        assert!(e.retry_after_secs().is_some_and(|s| s >= 1));
        drop(up2);
        // More than a whole window's allowance can never fit: 413.
        let mut big = s.begin(None, Some(two), None).await.unwrap();
        let e = big.expect(11 * 1024).await.unwrap_err();
        assert!(matches!(e, FileError::TooLarge { max: 10240 }), "{e:?}");
        drop(big);
        // Two uploads a minute from `one`.
        let e = s.begin(None, Some(one), None).await.unwrap_err();
        assert!(matches!(e, FileError::RateLimited { .. }));
        assert_eq!((e.http_status(), e.reason()), (429, "upload_rate_limited"));
        // `two` has its own buckets, but the total is shared: 8 + 4 of 12
        // KiB reserved, so 1 byte more is refused.
        let mut up3 = s.begin(None, Some(two), None).await.unwrap();
        assert_eq!(s.pending_usage().bytes, 12 * 1024);
        let e = up3
            .push(Bytes::from(vec![0u8; 4 * 1024 + 1]))
            .await
            .unwrap_err();
        assert!(matches!(e, FileError::StorageFull));
        assert_eq!((e.http_status(), e.reason()), (507, "insufficient_storage"));
        drop(up3);
        assert_eq!(s.pending_usage().bytes, 8 * 1024, "released");
        // A committed upload holds what it weighs (at least MIN_CHARGE).
        up.push(Bytes::from_static(b"small")).await.unwrap();
        let meta = up.finish().await.unwrap();
        assert_eq!(meta.owner, "");
        let usage = s.pending_usage();
        assert_eq!((usage.files, usage.bytes), (1, MIN_CHARGE));
        // Owners are not limited.
        let u = UserId::parse("alice").unwrap();
        for _ in 0..5 {
            let mut up = s.begin(Some(&u), Some(one), None).await.unwrap();
            up.expect(1 << 20).await.unwrap();
        }
        // No address (an in-process router): only the total applies.
        assert!(s.begin(None, None, None).await.is_ok());
    }

    #[tokio::test]
    async fn a_noted_reference_unpends_the_file_and_settles() {
        /// Records which ids were marked.
        #[derive(Default)]
        struct Marks(parking_lot::Mutex<Vec<FileId>>);
        #[async_trait]
        impl FileStore for Marks {
            async fn begin(&self) -> StoreResult<Box<dyn FileWriter>> {
                Err(StoreError::Other("read-only".into()))
            }
            async fn meta(&self, _: &FileId) -> StoreResult<Option<FileMeta>> {
                Ok(None)
            }
            async fn read(&self, _: &FileId, _: u64, _: u64) -> StoreResult<Option<ByteStream>> {
                Ok(None)
            }
            async fn mark_referenced(&self, id: &FileId) -> StoreResult<bool> {
                self.0.lock().push(id.clone());
                Ok(true)
            }
            async fn pending(&self) -> StoreResult<Vec<PendingFile>> {
                Ok(Vec::new())
            }
            async fn expire(&self, _: &FileId) -> StoreResult<bool> {
                Ok(false)
            }
        }
        let marks = Arc::new(Marks::default());
        let (s, refs) = FileService::new(
            Arc::clone(&marks) as Arc<dyn FileStore>,
            Arc::new(Fixed),
            FilesConfig::default(),
        )
        .with_reference_tracking();
        let a = FileId::from_u128(0xa);
        s.anon.hold(a.clone(), MIN_CHARGE, 10, 1);
        assert_eq!(s.pending_usage().files, 1);
        refs.note(format!(r#"{{"url":"http:\/\/x\/files\/{a}"}}"#).as_bytes());
        refs.note(b"plain text, no ids");
        refs.note(a.as_str().as_bytes());
        s.references_settled().await;
        assert_eq!(*marks.0.lock(), vec![a], "marked once");
        assert_eq!(s.pending_usage(), PendingUsage { files: 0, bytes: 0 });
        // Without tracking nothing is noted and settling is immediate.
        FileRefs::none().note(FileId::from_u128(1).as_str().as_bytes());
        FileService::unconfigured().references_settled().await;
    }
}
