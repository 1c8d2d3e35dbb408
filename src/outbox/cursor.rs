//! One endpoint's durable cursor: `<state_dir>/outbox/<id>.cursor`, a line of JSON
//! replaced whole (temporary file, `fsync`, rename, directory `fsync`), so a crash
//! leaves the old cursor or the new one, never a mix.
//!
//! It holds where the next undelivered record is, the batch in flight (so that after
//! a crash the same records go out again under the same `webhook-id`), and whether a
//! `410 Gone` disabled the endpoint.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::journal::Location;

/// Version of the file's layout.
const VERSION: u32 = 1;

/// A journal location as `[segment, offset]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct At(pub u32, pub u32);

impl From<Location> for At {
    fn from(l: Location) -> Self {
        At(l.segment, l.offset)
    }
}

impl From<At> for Location {
    fn from(a: At) -> Self {
        Location {
            segment: a.0,
            offset: a.1,
        }
    }
}

/// The batch being delivered: records `[start, end)`, which made `events` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InFlight {
    /// The batch's first record.
    pub start: At,
    /// Where the record after its last one starts.
    pub end: At,
    /// Events in it (part of its `webhook-id`).
    pub events: u32,
}

/// Why an endpoint was disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Disabled {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The HTTP status that did it (410).
    pub status: u16,
}

/// What the cursor file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cursor {
    /// Layout version ([`VERSION`]).
    pub version: u32,
    /// The first record not delivered yet (and not in flight).
    pub next: At,
    /// The batch in flight, if one is.
    pub in_flight: Option<InFlight>,
    /// Set once the endpoint answered 410: nothing more is sent to it.
    pub disabled: Option<Disabled>,
}

impl Cursor {
    /// A cursor at `next` with nothing in flight.
    pub(crate) fn at(next: Location) -> Self {
        Self {
            version: VERSION,
            next: next.into(),
            in_flight: None,
            disabled: None,
        }
    }
}

/// A cursor file that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CursorError {
    /// The file or its directory could not be read, written or synced.
    #[error("webhook cursor {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a cursor this version reads.
    #[error(
        "webhook cursor {path} is not valid ({reason}); move it away to start the endpoint \
         at the end of the journal"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The cursor file of endpoint `id` in `dir` (`<state_dir>/outbox`).
pub(crate) fn path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.cursor"))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

/// Reads the cursor at `path` (`None`: no file, a new endpoint). A temporary file a
/// crash left behind is removed: the rename never happened, the old cursor holds.
pub(crate) fn load(path: &Path) -> Result<Option<Cursor>, CursorError> {
    let io = |source| CursorError::Io {
        path: path.to_owned(),
        source,
    };
    match fs::remove_file(tmp_path(path)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let invalid = |reason: String| CursorError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let cursor: Cursor = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if cursor.version != VERSION {
        return Err(invalid(format!("version {}", cursor.version)));
    }
    Ok(Some(cursor))
}

/// Replaces the cursor at `path` durably.
pub(crate) fn save(path: &Path, cursor: &Cursor) -> Result<(), CursorError> {
    let io = |source| CursorError::Io {
        path: path.to_owned(),
        source,
    };
    let mut text = serde_json::to_vec(cursor).map_err(|e| io(std::io::Error::other(e)))?;
    text.push(b'\n');
    let tmp = tmp_path(path);
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(&text).map_err(io)?;
    f.sync_data().map_err(io)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(segment: u32, offset: u32) -> Location {
        Location { segment, offset }
    }

    #[test]
    fn round_trips_and_a_missing_file_is_a_new_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "crm");
        assert_eq!(load(&p).unwrap(), None);
        let mut c = Cursor::at(loc(3, 64));
        c.in_flight = Some(InFlight {
            start: loc(3, 64).into(),
            end: loc(3, 4096).into(),
            events: 17,
        });
        save(&p, &c).unwrap();
        assert_eq!(load(&p).unwrap(), Some(c.clone()));
        c.in_flight = None;
        c.next = loc(3, 4096).into();
        c.disabled = Some(Disabled {
            at_ms: 5,
            status: 410,
        });
        save(&p, &c).unwrap();
        assert_eq!(load(&p).unwrap(), Some(c));
    }

    /// A crash while the temporary file was written leaves it torn: the cursor before
    /// is what counts, and the leftover goes.
    #[test]
    fn a_torn_temporary_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "crm");
        let c = Cursor::at(loc(1, 64));
        save(&p, &c).unwrap();
        let tmp = tmp_path(&p);
        fs::write(&tmp, b"{\"version\":1,\"next\":[9,").unwrap();
        assert_eq!(load(&p).unwrap(), Some(c));
        assert!(!tmp.exists());
    }

    #[test]
    fn a_damaged_cursor_is_an_error_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "crm");
        fs::write(&p, b"{\"version\":1,\"next\":[9,").unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(
            err.contains("crm.cursor") && err.contains("not valid"),
            "{err}"
        );
        fs::write(
            &p,
            b"{\"version\":2,\"next\":[1,64],\"in_flight\":null,\"disabled\":null}",
        )
        .unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("version 2"));
    }
}
