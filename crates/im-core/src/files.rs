//! The file store port: uploaded file bodies and their metadata.
//!
//! Uploads are streamed: [`FileStore::begin`] hands out a [`FileWriter`]
//! with a fresh [`FileId`]; chunks are written as they arrive and the file
//! only becomes visible on [`FileWriter::commit`]. A writer that is aborted
//! or dropped without commit leaves nothing behind. Reads are ranged and
//! streamed too ([`FileStore::read`]).
//!
//! A file committed with an empty owner (an anonymous upload) is *pending*
//! until a stored message references it ([`FileStore::mark_referenced`]);
//! pending files are listed by [`FileStore::pending`] and deleted by
//! [`FileStore::expire`] once the service decides they are too old. Owned
//! files are never pending.

use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_core::Stream;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::ports::StoreResult;

/// The id of a stored file: 128 random bits as 32 lowercase hex digits.
/// Anything else is not a file id, so an id can never name a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileId(String);

/// Length of a [`FileId`] in characters.
pub const FILE_ID_LEN: usize = 32;

impl FileId {
    /// `Some` only for exactly 32 characters of `[0-9a-f]`.
    pub fn parse(s: &str) -> Option<Self> {
        let ok =
            s.len() == FILE_ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Self(s.to_owned()))
    }

    /// The id of 128 bits of randomness (lower-case hex, zero-padded).
    pub fn from_u128(bits: u128) -> Self {
        Self(format!("{bits:032x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first two characters: the shard directory of the id.
    pub fn shard(&self) -> &str {
        self.0.get(..2).unwrap_or("00")
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for FileId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s).ok_or_else(|| format!("not a file id: {s:?}"))
    }
}

impl From<FileId> for String {
    fn from(id: FileId) -> Self {
        id.0
    }
}

/// What is known about a stored file (the sidecar of its body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub file_id: FileId,
    /// The uploader's user id; empty for an anonymous upload.
    pub owner: String,
    /// Size of the body in bytes.
    pub size: u64,
    /// The content type the file is served with (sniffed from the bytes).
    pub content_type: String,
    /// The file name the client gave, if any (never used as a path).
    #[serde(default)]
    pub original_name: Option<String>,
    /// Upload time, ms since the Unix epoch.
    pub created_at: i64,
    /// SHA-256 of the body, lower-case hex.
    pub sha256: String,
}

/// An anonymous upload that no stored message references yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingFile {
    pub file_id: FileId,
    /// Size of the body in bytes.
    pub size: u64,
    /// Upload time, ms since the Unix epoch.
    pub created_at: i64,
}

/// A stream of file bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// An upload in progress. Nothing is visible to readers before
/// [`commit`](Self::commit); dropping the writer without committing must
/// remove whatever was written (as [`abort`](Self::abort) does, best effort).
#[async_trait]
pub trait FileWriter: Send {
    /// The id the file will have once committed.
    fn file_id(&self) -> &FileId;

    /// Appends a chunk of the body.
    async fn write(&mut self, chunk: Bytes) -> StoreResult<()>;

    /// Makes the body durable and visible under `meta.file_id` with `meta`.
    /// `meta.file_id` must be [`Self::file_id`]. With an empty `meta.owner`
    /// the file is pending from then on (durably, before it is visible).
    async fn commit(self: Box<Self>, meta: FileMeta) -> StoreResult<()>;

    /// Discards the upload and everything written so far.
    async fn abort(self: Box<Self>);
}

/// File bodies and metadata.
#[async_trait]
pub trait FileStore: Send + Sync {
    /// Starts an upload under a fresh, unguessable id.
    async fn begin(&self) -> StoreResult<Box<dyn FileWriter>>;

    /// The metadata of a committed file, `None` when there is none.
    async fn meta(&self, id: &FileId) -> StoreResult<Option<FileMeta>>;

    /// Bytes `start..=end_inclusive` of a committed file (the caller keeps
    /// the range within its size). A file that vanished is `Ok(None)`.
    async fn read(
        &self,
        id: &FileId,
        start: u64,
        end_inclusive: u64,
    ) -> StoreResult<Option<ByteStream>>;

    /// Records, durably, that a stored message references `id`: a pending
    /// file stops being pending. `Ok(false)` when it was not pending
    /// (unknown, owned, already referenced or expired).
    async fn mark_referenced(&self, id: &FileId) -> StoreResult<bool>;

    /// Every pending file.
    async fn pending(&self) -> StoreResult<Vec<PendingFile>>;

    /// Deletes the pending file `id` (body and metadata), unless it stopped
    /// being pending meanwhile: of a concurrent `expire` and
    /// `mark_referenced`, exactly one returns `Ok(true)`.
    async fn expire(&self, id: &FileId) -> StoreResult<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ids_are_32_lower_hex() {
        assert!(FileId::parse("0123456789abcdef0123456789abcdef").is_some());
        for bad in [
            "",
            "../../etc/passwd",
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "0123456789abcdef/123456789abcdef",
            "0123456789abcdef0123456789abcde\u{e9}",
        ] {
            assert!(FileId::parse(bad).is_none(), "{bad:?}");
        }
        let id = FileId::from_u128(1);
        assert_eq!(id.as_str(), "00000000000000000000000000000001");
        assert_eq!(id.shard(), "00");
        let s: String = id.clone().into();
        assert_eq!(FileId::try_from(s).unwrap(), id);
        assert!(FileId::try_from("../x".to_owned()).is_err());
    }
}
