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
//! Paths are only ever built from a [`FileId`] (32 lower-case hex digits),
//! never from client input, so no path traversal is possible.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use im_core::ports::StoreResult;
use im_core::{ByteStream, FileId, FileMeta, FileStore, FileWriter, StoreError};
use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

/// Size of the chunks a read streams.
const READ_CHUNK: u64 = 64 * 1024;
/// Write buffer of an upload.
const WRITE_BUFFER: usize = 256 * 1024;
const PART_SUFFIX: &str = ".part";

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
}
