//! Reading an assistant's library file: bounded size, TOML or JSON, typed errors.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a FAQ, canned-reply or spam file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file asked for.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file is larger than `assist.max_file_bytes`.
    #[error("{path} is larger than assist.max_file_bytes ({max} bytes)")]
    TooLarge {
        /// The file asked for.
        path: PathBuf,
        /// The bound, in bytes.
        max: u64,
    },
    /// The text is not valid TOML/JSON of the expected shape.
    #[error("cannot parse {what}: {reason}")]
    Parse {
        /// Which library (`FAQ`, `canned replies`, `spam rules`).
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// The file holds no entry.
    #[error("{0} file holds no entries")]
    Empty(&'static str),
    /// The file holds more entries than `assist.max_entries`.
    #[error("{what} file holds {count} entries, more than assist.max_entries ({max})")]
    TooMany {
        /// Which library.
        what: &'static str,
        /// Entries found.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// One entry breaks a rule (empty text, duplicate id, field too long, ...).
    #[error("{what} entry #{index}: {reason}")]
    Invalid {
        /// Which library.
        what: &'static str,
        /// 1-based position of the entry in the file.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Library file syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML (the default).
    Toml,
    /// JSON (files whose name ends in `.json`).
    Json,
}

impl Format {
    /// JSON for `*.json`, TOML otherwise.
    pub fn of_path(path: &Path) -> Self {
        match path.extension() {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Toml,
        }
    }
}

/// Reads `path` as UTF-8, refusing more than `max` bytes (checked while reading too,
/// so a file growing under us cannot slip past).
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<String, LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut text = String::new();
    file.take(max.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > max {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
            max,
        });
    }
    Ok(text)
}

/// Parses library file text as `T` in `format`, refusing text over `max_bytes`.
pub(crate) fn parse_bounded<T: DeserializeOwned>(
    text: &str,
    format: Format,
    what: &'static str,
    max_bytes: u64,
) -> Result<T, LoadError> {
    if text.len() as u64 > max_bytes {
        return Err(LoadError::TooLarge {
            path: "<text>".into(),
            max: max_bytes,
        });
    }
    parse(text, format, what)
}

/// Parses `text` as `T` in `format`.
pub(crate) fn parse<T: DeserializeOwned>(
    text: &str,
    format: Format,
    what: &'static str,
) -> Result<T, LoadError> {
    let parsed = match format {
        Format::Toml => toml::from_str(text).map_err(|e| e.to_string()),
        Format::Json => serde_json::from_str(text).map_err(|e| e.to_string()),
    };
    parsed.map_err(|reason| LoadError::Parse { what, reason })
}

/// Checks an entry count against the file bounds.
pub(crate) fn check_count(what: &'static str, count: usize, max: usize) -> Result<(), LoadError> {
    if count == 0 {
        return Err(LoadError::Empty(what));
    }
    if count > max {
        return Err(LoadError::TooMany { what, count, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        a: u32,
    }

    #[test]
    fn reads_within_bound_and_refuses_beyond() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.toml");
        std::fs::write(&p, "a = 1\n").unwrap();
        assert_eq!(read_bounded(&p, 6).unwrap(), "a = 1\n");
        assert!(matches!(
            read_bounded(&p, 5),
            Err(LoadError::TooLarge { .. })
        ));
        let missing = dir.path().join("missing.toml");
        assert!(matches!(
            read_bounded(&missing, 5),
            Err(LoadError::Read { .. })
        ));
    }

    #[test]
    fn parses_toml_and_json_by_extension() {
        assert_eq!(Format::of_path(Path::new("kb.JSON")), Format::Json);
        assert_eq!(Format::of_path(Path::new("kb.toml")), Format::Toml);
        assert_eq!(parse::<Doc>("a = 3", Format::Toml, "t").unwrap().a, 3);
        assert_eq!(parse::<Doc>("{\"a\": 4}", Format::Json, "t").unwrap().a, 4);
        assert!(matches!(
            parse::<Doc>("b = 3", Format::Toml, "t"),
            Err(LoadError::Parse { .. })
        ));
    }

    #[test]
    fn counts_are_bounded() {
        assert!(matches!(check_count("t", 0, 5), Err(LoadError::Empty(_))));
        assert!(matches!(
            check_count("t", 6, 5),
            Err(LoadError::TooMany { .. })
        ));
        check_count("t", 5, 5).unwrap();
    }
}
