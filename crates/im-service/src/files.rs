//! File uploads and downloads: the size limit, who may upload, content-type
//! sniffing, hashing, and the public URL of a file. Bodies go through the
//! [`FileStore`] port chunk by chunk; nothing buffers a whole file.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use im_core::ports::{Clock, StoreResult, SystemClock};
use im_core::{ByteStream, FileId, FileMeta, FileStore, FileWriter, StoreError, UserId};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// How many leading bytes are kept for content sniffing.
const SNIFF_BYTES: usize = 8 * 1024;
/// Longest original file name kept (characters).
const MAX_NAME_CHARS: usize = 255;
/// The type of anything that is not recognised.
pub const OCTET_STREAM: &str = "application/octet-stream";

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
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 100 * 1024 * 1024,
            anonymous_upload: false,
            public_base_url: None,
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
            Self::Store(e) if e.is_retryable() => "unavailable",
            Self::Store(_) => "internal",
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
}

impl std::fmt::Debug for FileService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileService")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl FileService {
    pub fn new(store: Arc<dyn FileStore>, clock: Arc<dyn Clock>, cfg: FilesConfig) -> Self {
        Self { store, clock, cfg }
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

    /// Starts an upload by `owner` (`None`: no token was given). `name` is
    /// the client's file name, kept as metadata only.
    pub async fn begin(
        &self,
        owner: Option<&UserId>,
        name: Option<&str>,
    ) -> Result<Upload, FileError> {
        let owner = match owner {
            Some(u) => u.as_str().to_owned(),
            None if self.cfg.anonymous_upload => String::new(),
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

    fn writer(&mut self) -> Result<&mut Box<dyn FileWriter>, FileError> {
        self.writer
            .as_mut()
            .ok_or_else(|| FileError::Store(StoreError::Other("upload already ended".into())))
    }

    /// Appends a chunk. Going over the limit discards the upload.
    pub async fn push(&mut self, chunk: Bytes) -> Result<(), FileError> {
        let len = chunk.len() as u64;
        let size = self.size.saturating_add(len);
        if size > self.max {
            self.discard().await;
            return Err(FileError::TooLarge { max: self.max });
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
            s.begin(None, None).await,
            Err(FileError::AuthRequired)
        ));
        let u = UserId::parse("alice").unwrap();
        // Past the policy, the unconfigured store refuses.
        assert!(matches!(
            s.begin(Some(&u), None).await,
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
            },
        )
    }

    #[tokio::test]
    async fn an_upload_is_hashed_sniffed_and_committed() {
        let store = OneFile::default();
        let s = service(&store, 1_000);
        let mut up = s.begin(None, Some("../pic.txt")).await.unwrap();
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
        let mut up = s.begin(None, None).await.unwrap();
        up.push(Bytes::from_static(b"0123456789")).await.unwrap();
        let e = up.push(Bytes::from_static(b"x")).await.unwrap_err();
        assert!(matches!(e, FileError::TooLarge { max: 10 }));
        assert_eq!(e.http_status(), 413);
        assert_eq!(e.reason(), "payload_too_large");
        {
            let st = store.state.lock();
            assert!(st.0.is_empty() && st.1.is_none() && st.2, "aborted");
        }
        let up = s.begin(None, None).await.unwrap();
        assert!(matches!(up.finish().await, Err(FileError::Empty)));
        assert!(store.state.lock().1.is_none());
    }
}
