//! What an attachment may be called, and how its name goes into a
//! `Content-Disposition` header.

/// Longest file name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 255;

/// Why a file name is refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, or longer than [`MAX_NAME_BYTES`].
    #[error("the file name must be 1 to 255 bytes of UTF-8")]
    Length,
    /// `/`, `\`, `.` or `..`: a path, not a name.
    #[error("a path in the name: `/`, `\\`, `.` and `..` are not file names")]
    Path,
    /// NUL or another control character.
    #[error("a control character in the file name")]
    Control,
}

/// Checks an attachment's file name: 1..=255 bytes, no `/`, `\`, NUL or control
/// characters, not `.` or `..`. Only the name travels (in the message); nothing on
/// disk is ever named after it, but clients save files under it.
pub fn check(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(NameError::Length);
    }
    if name == "." || name == ".." || name.contains(['/', '\\']) {
        return Err(NameError::Path);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::Control);
    }
    Ok(())
}

/// `attachment; filename*=UTF-8''<name>` with the name percent-encoded (RFC 8187:
/// everything but `attr-char` is encoded), plus an ASCII `filename` fallback.
pub fn disposition(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len() * 3);
    let mut ascii = String::with_capacity(name.len());
    for b in name.bytes() {
        let attr_char = b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b);
        if attr_char {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
        ascii.push(if attr_char || b == b' ' {
            char::from(b)
        } else {
            '_'
        });
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_checked() {
        for ok in [
            "a.png",
            "report 2026.pdf",
            "résumé.txt",
            "...",
            ".hidden",
            &"x".repeat(255),
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        assert_eq!(check(""), Err(NameError::Length));
        assert_eq!(check(&"x".repeat(256)), Err(NameError::Length));
        for path in [".", "..", "a/b", "../etc/passwd", "a\\b", "/"] {
            assert_eq!(check(path), Err(NameError::Path), "{path}");
        }
        for ctl in ["a\0b", "a\nb", "a\rb", "\u{7f}", "a\u{85}b"] {
            assert_eq!(check(ctl), Err(NameError::Control), "{ctl:?}");
        }
    }

    #[test]
    fn disposition_encodes_the_name() {
        assert_eq!(
            disposition("a b\"é.txt"),
            "attachment; filename=\"a b___.txt\"; filename*=UTF-8''a%20b%22%C3%A9.txt"
        );
    }

    proptest! {
        #[test]
        fn an_accepted_name_is_one_plain_path_component(name in "\\PC{0,300}|[./\\\\a\0\n]{0,4}") {
            if check(&name).is_ok() {
                prop_assert!((1..=MAX_NAME_BYTES).contains(&name.len()));
                let p = std::path::Path::new(&name);
                let parts: Vec<_> = p.components().collect();
                prop_assert_eq!(parts.len(), 1);
                prop_assert!(matches!(parts[0], std::path::Component::Normal(_)));
                prop_assert!(!name.chars().any(char::is_control));
            }
            // The header value never carries a control character or a quote
            // outside its quotes.
            let d = disposition(&name);
            prop_assert!(!d.chars().any(char::is_control));
            prop_assert!(d.is_ascii());
        }
    }
}
