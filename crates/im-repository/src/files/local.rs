//! Files on a local disk.
//!
//! Layout under the root directory: `<shard>/<file_id>` (the body) and
//! `<shard>/<file_id>.json` (its [`FileMeta`]), `<shard>` being the first
//! two hex digits of the id. An upload is written to `<shard>/.<id>.part`;
//! commit fsyncs it, writes the sidecar the same way, renames the body and
//! then the sidecar into place and fsyncs the directory. The sidecar is the
//! commit marker: a file without one does not exist for readers, so a
//! crash half-way through a commit never shows a partial file. Aborted or
//! dropped uploads delete their temporary files at once; a crash leaves
//! them behind for [`LocalFileStore::sweep_stale`].
//!
//! Pending files (anonymous uploads no message references yet) have a
//! marker `pending/<file_id>` holding `<size> <created_at>`. It is made
//! durable before the sidecar makes the file visible, so an anonymous file
//! never exists without its marker; referencing the file deletes the
//! marker (and fsyncs the directory), so the mark survives restarts.
//! Expiring renames the marker to `pending/<file_id>.expiring` first (the
//! rename decides a race with a reference), then deletes the sidecar, the
//! body and that claim; [`FileStore::pending`] finishes claims a crash
//! interrupted. The directory stays as small as the pending set, which the
//! service caps, so listing it is cheap.
//!
//! Paths are only ever built from a [`FileId`] (32 lower-case hex digits),
//! never from client input, so no path traversal is possible.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use im_core::ports::StoreResult;
use im_core::{ByteStream, FileId, FileMeta, FileStore, FileWriter, PendingFile, StoreError};
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

/// Size of the chunks a read streams.
const READ_CHUNK: u64 = 64 * 1024;
/// Write buffer of an upload.
const WRITE_BUFFER: usize = 256 * 1024;
const PART_SUFFIX: &str = ".part";
/// Directory of the pending markers, under the root.
const PENDING_DIR: &str = "pending";
/// Suffix of a pending marker claimed by an expiry.
const EXPIRING_SUFFIX: &str = ".expiring";

/// Uploaded files in a directory of the local file system.
#[derive(Debug, Clone)]
pub struct LocalFileStore {
    root: PathBuf,
}

fn io_error(what: &str, e: &std::io::Error) -> StoreError {
    match e.kind() {
        // Out of space is transient from the client's point of view.
        ErrorKind::StorageFull => StoreError::Unavailable(format!("{what}: {e}")),
        _ => StoreError::Other(format!("{what}: {e}")),
    }
}

impl LocalFileStore {
    /// Opens (creating it when missing) the store rooted at `root`.
    pub async fn open(root: impl Into<PathBuf>) -> StoreResult<Self> {
        let root = root.into();
        fs::create_dir_all(&root)
            .await
            .map_err(|e| io_error(&format!("creating {}", root.display()), &e))?;
        // Fail at startup, not at the first upload, when it is unusable.
        let probe = root.join(".write-probe.part");
        fs::write(&probe, b"")
            .await
            .map_err(|e| io_error(&format!("writing in {}", root.display()), &e))?;
        let _ = fs::remove_file(&probe).await;
        let pending = root.join(PENDING_DIR);
        fs::create_dir_all(&pending)
            .await
            .map_err(|e| io_error(&format!("creating {}", pending.display()), &e))?;
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn shard_dir(&self, id: &FileId) -> PathBuf {
        self.root.join(id.shard())
    }

    fn body_path(&self, id: &FileId) -> PathBuf {
        self.shard_dir(id).join(id.as_str())
    }

    fn meta_path(&self, id: &FileId) -> PathBuf {
        self.shard_dir(id).join(format!("{id}.json"))
    }

    fn pending_dir(&self) -> PathBuf {
        self.root.join(PENDING_DIR)
    }

    /// Deletes the sidecar, the body and the claimed marker of an expiring
    /// file (each may already be gone).
    async fn finish_expiry(&self, id: &FileId) -> StoreResult<()> {
        for path in [self.meta_path(id), self.body_path(id)] {
            match fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("deleting an expired file", &e)),
            }
        }
        // The sidecar is gone for good before the claim is.
        sync_dir(&self.shard_dir(id))
            .await
            .map_err(|e| io_error("syncing a shard dir", &e))?;
        let claim = self.pending_dir().join(format!("{id}{EXPIRING_SUFFIX}"));
        match fs::remove_file(&claim).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("deleting a pending marker", &e)),
        }
    }

    /// Deletes what crashed uploads left behind: temporary `.part` files
    /// and bodies without a sidecar, last modified more than `older_than`
    /// ago (uploads in progress, on this node or another sharing the
    /// directory, are younger). Returns how many files were removed.
    pub async fn sweep_stale(&self, older_than: Duration) -> StoreResult<usize> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || sweep(&root, older_than))
            .await
            .map_err(|e| StoreError::Other(format!("sweep task: {e}")))?
    }
}

fn sweep(root: &Path, older_than: Duration) -> StoreResult<usize> {
    let cutoff = SystemTime::now()
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut removed = 0;
    let shards = std::fs::read_dir(root).map_err(|e| io_error("listing the files dir", &e))?;
    for shard in shards.flatten() {
        if shard.file_name() == PENDING_DIR {
            // Only temporary markers of interrupted commits; the markers
            // themselves are named like bodies but are not orphans.
            removed += remove_stale_parts(&shard.path(), cutoff);
            continue;
        }
        let is_shard = shard.file_name().len() == 2 && shard.path().is_dir();
        if !is_shard {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let orphan_body = FileId::parse(&name)
                .is_some_and(|_| !shard.path().join(format!("{name}.json")).exists());
            let stale = (name.ends_with(PART_SUFFIX) || orphan_body)
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t <= cutoff);
            if stale && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Deletes the `.part` files in `dir` last modified before `cutoff`.
fn remove_stale_parts(dir: &Path, cutoff: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(PART_SUFFIX))
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t <= cutoff)
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// fsync of a directory, so that renames in it are durable.
async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

#[async_trait]
impl FileStore for LocalFileStore {
    async fn begin(&self) -> StoreResult<Box<dyn FileWriter>> {
        let id = FileId::from_u128(rand::random::<u128>());
        let dir = self.shard_dir(&id);
        fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error("creating a shard dir", &e))?;
        let tmp_body = dir.join(format!(".{id}{PART_SUFFIX}"));
        let tmp_meta = dir.join(format!(".{id}.json{PART_SUFFIX}"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_body)
            .await
            .map_err(|e| io_error("creating an upload file", &e))?;
        Ok(Box::new(LocalWriter {
            body: self.body_path(&id),
            meta: self.meta_path(&id),
            id,
            dir,
            tmp_body,
            tmp_meta,
            file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            pending_dir: self.pending_dir(),
            marker: None,
            committed: false,
        }))
    }

    async fn meta(&self, id: &FileId) -> StoreResult<Option<FileMeta>> {
        let text = match fs::read(self.meta_path(id)).await {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("reading file metadata", &e)),
        };
        let meta: FileMeta = serde_json::from_slice(&text)
            .map_err(|e| StoreError::Other(format!("corrupt metadata of file {id}: {e}")))?;
        if &meta.file_id != id {
            return Err(StoreError::Other(format!(
                "metadata of file {id} names {}",
                meta.file_id
            )));
        }
        Ok(Some(meta))
    }

    async fn read(
        &self,
        id: &FileId,
        start: u64,
        end_inclusive: u64,
    ) -> StoreResult<Option<ByteStream>> {
        let mut file = match File::open(self.body_path(id)).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("opening a file", &e)),
        };
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| io_error("seeking in a file", &e))?;
        }
        let remaining = end_inclusive.saturating_sub(start).saturating_add(1);
        let stream =
            futures_util::stream::unfold((file, remaining), |(mut file, remaining)| async move {
                if remaining == 0 {
                    return None;
                }
                let want = usize::try_from(remaining.min(READ_CHUNK)).unwrap_or(64 * 1024);
                let mut buf = vec![0u8; want];
                match file.read(&mut buf).await {
                    Ok(0) => Some((
                        Err(StoreError::Other(
                            "file is shorter than its metadata".into(),
                        )),
                        (file, 0),
                    )),
                    Ok(n) => {
                        buf.truncate(n);
                        let left = remaining.saturating_sub(n as u64);
                        Some((Ok(Bytes::from(buf)), (file, left)))
                    }
                    Err(e) => Some((Err(io_error("reading a file", &e)), (file, 0))),
                }
            });
        Ok(Some(Box::pin(stream)))
    }

    async fn mark_referenced(&self, id: &FileId) -> StoreResult<bool> {
        let dir = self.pending_dir();
        match fs::remove_file(dir.join(id.as_str())).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error("deleting a pending marker", &e)),
        }
        sync_dir(&dir)
            .await
            .map_err(|e| io_error("syncing the pending dir", &e))?;
        Ok(true)
    }

    async fn pending(&self) -> StoreResult<Vec<PendingFile>> {
        let dir = self.pending_dir();
        let (live, claimed) = tokio::task::spawn_blocking(move || list_pending(&dir))
            .await
            .map_err(|e| StoreError::Other(format!("listing pending files: {e}")))??;
        for id in claimed {
            self.finish_expiry(&id).await?;
        }
        Ok(live)
    }

    async fn expire(&self, id: &FileId) -> StoreResult<bool> {
        let dir = self.pending_dir();
        let claim = dir.join(format!("{id}{EXPIRING_SUFFIX}"));
        match fs::rename(dir.join(id.as_str()), &claim).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error("claiming a pending marker", &e)),
        }
        self.finish_expiry(id).await?;
        Ok(true)
    }
}

/// The markers in `dir`: live ones (parsed) and ids whose expiry was
/// claimed but not finished. Unreadable or malformed markers are skipped
/// (and logged): such a file is kept, never deleted on a guess.
fn list_pending(dir: &Path) -> StoreResult<(Vec<PendingFile>, Vec<FileId>)> {
    let mut live = Vec::new();
    let mut claimed = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("listing the pending dir", &e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name.strip_suffix(EXPIRING_SUFFIX).and_then(FileId::parse) {
            claimed.push(id);
            continue;
        }
        let Some(id) = FileId::parse(&name) else {
            continue;
        };
        let parsed = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|text| parse_marker(&text));
        match parsed {
            Some((size, created_at)) => live.push(PendingFile {
                file_id: id,
                size,
                created_at,
            }),
            None => tracing::warn!(file_id = %id, "unreadable pending marker; the file is kept"),
        }
    }
    Ok((live, claimed))
}

/// `<size> <created_at>` of a pending marker.
fn parse_marker(text: &str) -> Option<(u64, i64)> {
    let (size, created) = text.trim().split_once(' ')?;
    Some((size.parse().ok()?, created.parse().ok()?))
}

/// An upload into `<shard>/.<id>.part`.
struct LocalWriter {
    id: FileId,
    dir: PathBuf,
    tmp_body: PathBuf,
    tmp_meta: PathBuf,
    body: PathBuf,
    meta: PathBuf,
    file: Option<BufWriter<File>>,
    pending_dir: PathBuf,
    /// The pending marker written by this commit (anonymous uploads).
    marker: Option<PathBuf>,
    committed: bool,
}

impl LocalWriter {
    async fn finish(&mut self, meta: &FileMeta) -> std::io::Result<()> {
        if meta.file_id != self.id {
            return Err(std::io::Error::other("metadata names another file"));
        }
        let mut file = self
            .file
            .take()
            .ok_or_else(|| std::io::Error::other("upload already finished"))?;
        file.flush().await?;
        let file = file.into_inner();
        file.sync_all().await?;
        drop(file);
        let json = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
        let mut side = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.tmp_meta)
            .await?;
        side.write_all(&json).await?;
        side.sync_all().await?;
        drop(side);
        if meta.owner.is_empty() {
            // Pending before visible: never an anonymous file without its marker.
            let tmp = self.pending_dir.join(format!(".{}{PART_SUFFIX}", self.id));
            let marker = self.pending_dir.join(self.id.as_str());
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .await?;
            f.write_all(format!("{} {}", meta.size, meta.created_at).as_bytes())
                .await?;
            f.sync_all().await?;
            drop(f);
            self.marker = Some(marker.clone());
            if let Err(e) = fs::rename(&tmp, &marker).await {
                let _ = fs::remove_file(&tmp).await;
                return Err(e);
            }
            sync_dir(&self.pending_dir).await?;
        }
        fs::rename(&self.tmp_body, &self.body).await?;
        // The sidecar last: it is what makes the file exist.
        fs::rename(&self.tmp_meta, &self.meta).await?;
        self.committed = true;
        sync_dir(&self.dir).await
    }

    fn remove_leftovers(&self) {
        let _ = std::fs::remove_file(&self.tmp_body);
        let _ = std::fs::remove_file(&self.tmp_meta);
        if !self.committed {
            // A body renamed into place whose sidecar never made it.
            let _ = std::fs::remove_file(&self.body);
            if let Some(marker) = &self.marker {
                let _ = std::fs::remove_file(marker);
            }
        }
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if !self.committed {
            self.remove_leftovers();
        }
    }
}

#[async_trait]
impl FileWriter for LocalWriter {
    fn file_id(&self) -> &FileId {
        &self.id
    }

    async fn write(&mut self, chunk: Bytes) -> StoreResult<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| StoreError::Other("upload already finished".into()))?;
        file.write_all(&chunk)
            .await
            .map_err(|e| io_error("writing an upload", &e))
    }

    async fn commit(mut self: Box<Self>, meta: FileMeta) -> StoreResult<()> {
        match self.finish(&meta).await {
            Ok(()) => Ok(()),
            // Renamed into place but the directory fsync failed: the file is
            // visible; report the failure but keep it consistent.
            Err(e) if self.committed => Err(io_error("syncing the files dir", &e)),
            Err(e) => {
                self.file = None;
                self.remove_leftovers();
                Err(io_error("committing an upload", &e))
            }
        }
    }

    async fn abort(mut self: Box<Self>) {
        // Close the file before unlinking it (Drop does the unlinking).
        if let Some(f) = self.file.take() {
            drop(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn meta_for(id: &FileId, size: u64) -> FileMeta {
        FileMeta {
            file_id: id.clone(),
            owner: "alice".into(),
            size,
            content_type: "application/octet-stream".into(),
            original_name: Some("a.bin".into()),
            created_at: 1_700_000_000_000,
            sha256: "00".repeat(32),
        }
    }

    /// Every regular file under `root`, relative.
    fn files_under(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    async fn read_all(store: &LocalFileStore, id: &FileId, a: u64, b: u64) -> Vec<u8> {
        let mut s = store.read(id, a, b).await.unwrap().unwrap();
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn commit_makes_the_file_visible_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::open(dir.path().join("files"))
            .await
            .unwrap();
        let mut w = store.begin().await.unwrap();
        let id = w.file_id().clone();
        assert!(FileId::parse(id.as_str()).is_some());
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for chunk in body.chunks(7_000) {
            w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        assert_eq!(
            store.meta(&id).await.unwrap(),
            None,
            "invisible before commit"
        );
        assert!(store.read(&id, 0, 0).await.unwrap().is_none());
        let meta = meta_for(&id, body.len() as u64);
        w.commit(meta.clone()).await.unwrap();

        assert_eq!(store.meta(&id).await.unwrap(), Some(meta));
        assert_eq!(read_all(&store, &id, 0, body.len() as u64 - 1).await, body);
        assert_eq!(
            read_all(&store, &id, 70_000, 140_001).await,
            body[70_000..=140_001]
        );
        assert_eq!(read_all(&store, &id, 5, 5).await, body[5..6]);
        let shard = id.shard();
        assert_eq!(
            files_under(store.root()),
            vec![format!("{shard}/{id}"), format!("{shard}/{id}.json")]
        );
    }

    #[tokio::test]
    async fn abort_and_drop_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::open(dir.path()).await.unwrap();
        let mut w = store.begin().await.unwrap();
        let id = w.file_id().clone();
        w.write(Bytes::from_static(b"partial")).await.unwrap();
        assert_eq!(files_under(dir.path()).len(), 1, "the .part file");
        w.abort().await;
        assert!(files_under(dir.path()).is_empty());
        assert_eq!(store.meta(&id).await.unwrap(), None);

        let mut w = store.begin().await.unwrap();
        w.write(Bytes::from_static(b"partial")).await.unwrap();
        drop(w);
        assert!(files_under(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn commit_with_another_id_fails_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::open(dir.path()).await.unwrap();
        let mut w = store.begin().await.unwrap();
        w.write(Bytes::from_static(b"x")).await.unwrap();
        let other = FileId::from_u128(7);
        assert!(w.commit(meta_for(&other, 1)).await.is_err());
        assert!(files_under(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn unknown_ids_and_corrupt_sidecars() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::open(dir.path()).await.unwrap();
        let id = FileId::from_u128(0xabc);
        assert_eq!(store.meta(&id).await.unwrap(), None);
        assert!(store.read(&id, 0, 10).await.unwrap().is_none());
        // A body without a sidecar (crash between the renames) does not exist.
        std::fs::create_dir_all(dir.path().join(id.shard())).unwrap();
        std::fs::write(dir.path().join(id.shard()).join(id.as_str()), b"x").unwrap();
        assert_eq!(store.meta(&id).await.unwrap(), None);
        std::fs::write(
            dir.path().join(id.shard()).join(format!("{id}.json")),
            b"{not json",
        )
        .unwrap();
        assert!(store.meta(&id).await.is_err());
    }

    #[tokio::test]
    async fn sweep_removes_only_stale_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::open(dir.path()).await.unwrap();
        let mut w = store.begin().await.unwrap();
        let id = w.file_id().clone();
        w.write(Bytes::from_static(b"abc")).await.unwrap();
        w.commit(meta_for(&id, 3)).await.unwrap();
        let orphan = FileId::from_u128(1);
        std::fs::create_dir_all(dir.path().join(orphan.shard())).unwrap();
        std::fs::write(dir.path().join(orphan.shard()).join(orphan.as_str()), b"x").unwrap();
        std::fs::write(dir.path().join(orphan.shard()).join(".zz.part"), b"x").unwrap();
        // Young leftovers stay (an upload may be in progress).
        assert_eq!(
            store.sweep_stale(Duration::from_secs(3600)).await.unwrap(),
            0
        );
        assert_eq!(store.sweep_stale(Duration::ZERO).await.unwrap(), 2);
        let shard = id.shard();
        assert_eq!(
            files_under(dir.path()),
            vec![format!("{shard}/{id}"), format!("{shard}/{id}.json")]
        );
    }

    async fn commit_anonymous(store: &LocalFileStore, body: &[u8], at: i64) -> FileId {
        let mut w = store.begin().await.unwrap();
        let id = w.file_id().clone();
        w.write(Bytes::copy_from_slice(body)).await.unwrap();
        let mut meta = meta_for(&id, body.len() as u64);
        meta.owner = String::new();
        meta.created_at = at;
        w.commit(meta).await.unwrap();
        id
    }

    #[tokio::test]
    async fn anonymous_files_are_pending_until_referenced_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::open(dir.path()).await.unwrap();
        // Owned files are never pending.
        let mut w = store.begin().await.unwrap();
        let owned = w.file_id().clone();
        w.write(Bytes::from_static(b"mine")).await.unwrap();
        w.commit(meta_for(&owned, 4)).await.unwrap();
        assert!(store.pending().await.unwrap().is_empty());
        assert!(!store.mark_referenced(&owned).await.unwrap());
        assert!(!store.expire(&owned).await.unwrap());
        assert!(store.meta(&owned).await.unwrap().is_some());

        let kept = commit_anonymous(&store, b"kept", 10).await;
        let gone = commit_anonymous(&store, b"gone!", 20).await;
        let mut pending = store.pending().await.unwrap();
        pending.sort_by_key(|p| p.created_at);
        assert_eq!(
            pending,
            vec![
                PendingFile {
                    file_id: kept.clone(),
                    size: 4,
                    created_at: 10
                },
                PendingFile {
                    file_id: gone.clone(),
                    size: 5,
                    created_at: 20
                },
            ]
        );
        assert!(store.mark_referenced(&kept).await.unwrap());
        assert!(!store.mark_referenced(&kept).await.unwrap(), "only once");
        assert!(!store.expire(&kept).await.unwrap(), "referenced: kept");
        assert!(store.expire(&gone).await.unwrap());
        assert!(!store.expire(&gone).await.unwrap());
        assert!(
            !store.mark_referenced(&gone).await.unwrap(),
            "expired first"
        );
        assert_eq!(store.meta(&gone).await.unwrap(), None);
        assert!(store.read(&gone, 0, 0).await.unwrap().is_none());
        assert_eq!(read_all(&store, &kept, 0, 3).await, b"kept");

        // The mark is on disk: a reopened store agrees.
        let store = LocalFileStore::open(dir.path()).await.unwrap();
        assert!(store.pending().await.unwrap().is_empty());
        let mut left: Vec<_> = files_under(dir.path());
        left.sort();
        let mut want = vec![
            format!("{}/{owned}", owned.shard()),
            format!("{}/{owned}.json", owned.shard()),
            format!("{}/{kept}", kept.shard()),
            format!("{}/{kept}.json", kept.shard()),
        ];
        want.sort();
        assert_eq!(left, want);
    }

    #[tokio::test]
    async fn an_interrupted_expiry_is_finished_by_the_next_listing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileStore::open(dir.path()).await.unwrap();
        let id = commit_anonymous(&store, b"abc", 1).await;
        // A crash right after the claim.
        let pending = dir.path().join(PENDING_DIR);
        std::fs::rename(
            pending.join(id.as_str()),
            pending.join(format!("{id}{EXPIRING_SUFFIX}")),
        )
        .unwrap();
        assert!(store.pending().await.unwrap().is_empty());
        assert_eq!(store.meta(&id).await.unwrap(), None);
        assert!(files_under(dir.path()).is_empty());
        // A stale temporary marker goes with the startup sweep, the live
        // markers stay.
        let live = commit_anonymous(&store, b"x", 2).await;
        std::fs::write(pending.join(".zz.part"), b"1 2").unwrap();
        assert_eq!(store.sweep_stale(Duration::ZERO).await.unwrap(), 1);
        assert_eq!(store.pending().await.unwrap().len(), 1);
        assert!(store.meta(&live).await.unwrap().is_some());
    }
}
