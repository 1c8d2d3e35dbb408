//! The attachment store on disk: `<state_dir>/files/<conversation>/<sha256>`, one
//! file per distinct content per conversation, written whole or not at all (a temp
//! file in the same directory, fsync, rename, fsync of the directory). Blocking
//! I/O: only the files thread (`super::spawn`) and start-up call it.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Prefix of a file being written; start-up removes what a crash left.
const TEMP_PREFIX: &str = ".tmp-";

/// The store's root (`<state_dir>/files`).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// What [`Store::put`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Lower-case hex SHA-256 of the content.
    pub id: String,
    /// The content was there already (nothing written).
    pub dedup: bool,
}

/// The lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `id` is what [`sha256_hex`] gives: 64 lower-case hex digits.
pub fn valid_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Store {
    /// The store under `root` (created on first write).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// A conversation's directory.
    fn dir(&self, conversation: u64) -> PathBuf {
        self.root.join(conversation.to_string())
    }

    /// Stores `bytes` for `conversation`; content already there is not written again.
    pub fn put(&self, conversation: u64, bytes: &[u8]) -> io::Result<Stored> {
        let id = sha256_hex(bytes);
        let dir = self.dir(conversation);
        let path = dir.join(&id);
        if path.is_file() {
            return Ok(Stored { id, dedup: true });
        }
        let fresh_dir = !dir.exists();
        fs::create_dir_all(&dir)?;
        if fresh_dir {
            // The new directory's entry in the root is durable too.
            sync_dir(&self.root)?;
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        sync_dir(&dir)?;
        Ok(Stored { id, dedup: false })
    }

    /// The content `id` of `conversation`, if it is there and at most `max` bytes.
    pub fn get(&self, conversation: u64, id: &str, max: usize) -> io::Result<Vec<u8>> {
        if !valid_id(id) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let path = self.dir(conversation).join(id);
        let len = fs::metadata(&path)?.len();
        if len > max as u64 {
            return Err(io::Error::other(format!(
                "{} is {len} bytes, more than api.max_attachment_bytes",
                path.display()
            )));
        }
        fs::read(path)
    }

    /// Removes a conversation's files (retention forgot it). Returns the files removed.
    pub fn remove(&self, conversation: u64) -> io::Result<usize> {
        let dir = self.dir(conversation);
        let n = match fs::read_dir(&dir) {
            Ok(entries) => entries.count(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        fs::remove_dir_all(&dir)?;
        Ok(n)
    }

    /// Start-up: removes the temp files a crash left mid-write (no partial file is
    /// ever visible under its id). Returns how many.
    pub fn clean_temp(&self) -> io::Result<usize> {
        let mut removed = 0;
        let dirs = match fs::read_dir(&self.root) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        for dir in dirs {
            let dir = dir?.path();
            if !dir.is_dir() {
                continue;
            }
            for f in fs::read_dir(&dir)? {
                let f = f?;
                if f.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    fs::remove_file(f.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// The root (for tests and logs).
    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_stores_once_by_content_and_get_reads_it() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Store::new(tmp.path().join("files"));
        let a = s.put(7, b"hello").unwrap();
        assert_eq!(a.id, sha256_hex(b"hello"));
        assert!(!a.dedup);
        assert!(valid_id(&a.id));
        let again = s.put(7, b"hello").unwrap();
        assert!(again.dedup);
        assert_eq!(fs::read_dir(tmp.path().join("files/7")).unwrap().count(), 1);
        assert_eq!(s.get(7, &a.id, 100).unwrap(), b"hello");
        // Another conversation does not see it.
        assert_eq!(
            s.get(8, &a.id, 100).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(s.get(7, &a.id, 4).is_err());
        assert!(s.get(7, "../7", 100).is_err());
        assert_eq!(s.remove(7).unwrap(), 1);
        assert!(!tmp.path().join("files/7").exists());
        assert_eq!(s.remove(7).unwrap(), 0);
    }

    #[test]
    fn start_up_removes_leftover_temp_files_only() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Store::new(tmp.path().join("files"));
        assert_eq!(s.clean_temp().unwrap(), 0);
        let kept = s.put(3, b"kept").unwrap();
        let dir = tmp.path().join("files/3");
        fs::write(dir.join(".tmp-abc123"), b"half a fi").unwrap();
        assert_eq!(s.clean_temp().unwrap(), 1);
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec![kept.id]);
    }
}
