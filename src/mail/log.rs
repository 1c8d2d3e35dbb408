//! The durable marks of what was mailed: `<state_dir>/mail/marks.log`, a text file
//! of one line per change, the last line of a conversation winning:
//!
//! ```text
//! switchboard-mail-marks 1
//! <conversation> <offline_through> <offline_sent_ms> <digest_through>
//! ```
//!
//! Each change is appended and synced (`fdatasync`) before the thread goes on. At
//! open, and whenever it grows past twice the live marks (plus a floor), the file is
//! rewritten with one line per conversation (temporary file, sync, rename, directory
//! sync). A last line cut by a crash is ignored; any other line that does not parse
//! stops the start with the file and line named.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::core::Mark;

/// The first line of the file.
const HEADER: &str = "switchboard-mail-marks 1";
/// Lines the file may hold beyond twice the live marks before it is rewritten.
const SLACK_LINES: usize = 4096;

/// Why the marks file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Reading, writing or syncing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not what this version writes.
    #[error(
        "{path}:{line}: not a mail marks line (damaged, or from another version); \
         move the file away to start email from the end of the journal"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

/// The open marks file.
#[derive(Debug)]
pub(crate) struct MarksLog {
    path: PathBuf,
    file: Option<File>,
    /// Lines written since the last rewrite (the header not counted).
    lines: usize,
}

fn parse(line: &str) -> Option<(u64, Mark)> {
    let mut f = line.split(' ').map(str::parse::<u64>);
    let conv = f.next()?.ok()?;
    let mark = Mark {
        offline_through: f.next()?.ok()?,
        offline_sent_ms: f.next()?.ok()?,
        digest_through: f.next()?.ok()?,
    };
    f.next().is_none().then_some((conv, mark))
}

fn line(conv: u64, m: &Mark) -> String {
    format!(
        "{conv} {} {} {}\n",
        m.offline_through, m.offline_sent_ms, m.digest_through
    )
}

impl MarksLog {
    /// The marks file's path in `dir` (`<state_dir>/mail`).
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join("marks.log")
    }

    /// Reads the file at `path`: its marks (`None` when there is no file yet: email
    /// was never on here). An existing file is rewritten compact at once.
    pub(crate) fn open(path: &Path) -> Result<(Self, Option<HashMap<u64, Mark>>), LogError> {
        let io = |source| LogError::Io {
            path: path.to_owned(),
            source,
        };
        let mut log = Self {
            path: path.to_owned(),
            file: None,
            lines: 0,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((log, None)),
            Err(e) => return Err(io(e)),
        };
        let damaged = |line| LogError::Damaged {
            path: path.to_owned(),
            line,
        };
        let mut marks = HashMap::new();
        // A last line without its newline was cut by a crash: the change it held was
        // not synced, so the mail it marks is sent again (at least once).
        let whole = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        for (i, l) in whole.lines().enumerate() {
            if i == 0 {
                if l != HEADER {
                    return Err(damaged(1));
                }
                continue;
            }
            let (conv, mark) = parse(l).ok_or_else(|| damaged(i + 1))?;
            marks.insert(conv, mark);
        }
        log.rewrite(&marks)?;
        Ok((log, Some(marks)))
    }

    /// Whether the file exists and is open (not before a first start's first write).
    pub(crate) fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Appends `changes` and syncs them.
    pub(crate) fn append(&mut self, changes: &[(u64, Mark)]) -> Result<(), LogError> {
        if changes.is_empty() {
            return Ok(());
        }
        let text: String = changes.iter().map(|(c, m)| line(*c, m)).collect();
        let io = |source| LogError::Io {
            path: self.path.clone(),
            source,
        };
        let file = match &mut self.file {
            Some(f) => f,
            None => return Err(io(std::io::Error::other("marks file not open"))),
        };
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        self.lines += changes.len();
        Ok(())
    }

    /// Whether the file holds many more lines than `live` marks need.
    pub(crate) fn wants_rewrite(&self, live: usize) -> bool {
        self.lines > live.saturating_mul(2).saturating_add(SLACK_LINES)
    }

    /// Replaces the file with one line per mark (creates it the first time).
    pub(crate) fn rewrite(&mut self, marks: &HashMap<u64, Mark>) -> Result<(), LogError> {
        let io = |source| LogError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("log.tmp");
        let mut text = String::with_capacity(32 + marks.len() * 32);
        text.push_str(HEADER);
        text.push('\n');
        let mut sorted: Vec<_> = marks.iter().collect();
        sorted.sort_unstable_by_key(|(c, _)| **c);
        for (c, m) in sorted {
            text.push_str(&line(*c, m));
        }
        {
            let mut f = File::create(&tmp).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        self.file = Some(
            OpenOptions::new()
                .append(true)
                .open(&self.path)
                .map_err(io)?,
        );
        self.lines = marks.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(o: u64, t: u64, d: u64) -> Mark {
        Mark {
            offline_through: o,
            offline_sent_ms: t,
            digest_through: d,
        }
    }

    #[test]
    fn marks_survive_a_reopen_last_line_winning() {
        let dir = tempfile::tempdir().unwrap();
        let path = MarksLog::path(dir.path());
        let (mut log, marks) = MarksLog::open(&path).unwrap();
        assert!(marks.is_none(), "no file: a first start");
        assert!(!log.is_open());
        log.rewrite(&HashMap::new()).unwrap();
        log.append(&[(1, mark(1, 10, 0)), (2, mark(0, 0, 5))])
            .unwrap();
        log.append(&[(1, mark(3, 20, 4))]).unwrap();
        drop(log);
        let (_, marks) = MarksLog::open(&path).unwrap();
        let marks = marks.unwrap();
        assert_eq!(marks.len(), 2);
        assert_eq!(marks[&1], mark(3, 20, 4));
        assert_eq!(marks[&2], mark(0, 0, 5));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "rewritten compact at open: {text}");
    }

    #[test]
    fn a_cut_last_line_is_ignored_other_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = MarksLog::path(dir.path());
        std::fs::write(&path, format!("{HEADER}\n1 2 3 4\n5 6 7")).unwrap();
        let (mut log, marks) = MarksLog::open(&path).unwrap();
        assert_eq!(marks.unwrap().len(), 1);
        log.append(&[(9, mark(1, 1, 1))]).unwrap();
        let (_, marks) = MarksLog::open(&path).unwrap();
        assert_eq!(marks.unwrap().len(), 2, "the cut line is gone, not glued");
        std::fs::write(&path, format!("{HEADER}\n1 2 3 4\nx y\n5 6 7 8\n")).unwrap();
        let err = MarksLog::open(&path).unwrap_err().to_string();
        assert!(err.contains("marks.log:3"), "{err}");
        std::fs::write(&path, "something else\n").unwrap();
        assert!(matches!(
            MarksLog::open(&path),
            Err(LogError::Damaged { line: 1, .. })
        ));
    }

    #[test]
    fn it_asks_for_a_rewrite_past_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MarksLog::open(&MarksLog::path(dir.path())).unwrap();
        log.rewrite(&HashMap::new()).unwrap();
        let changes: Vec<(u64, Mark)> = (0..SLACK_LINES as u64 + 10)
            .map(|i| (i % 2, mark(i, i, i)))
            .collect();
        log.append(&changes).unwrap();
        assert!(log.wants_rewrite(2));
        assert!(!log.wants_rewrite(SLACK_LINES));
    }
}
