//! Text normalisation shared by the assistants: full-width ASCII folded to ASCII,
//! Unicode lowercase, traditional Chinese characters folded to simplified (`fast2s`,
//! MIT; so 可以換貨嗎 matches 可以换货吗), every run of whitespace/punctuation/symbols
//! one space.

/// Characters of a message looked at by the matchers; FAQ questions and spam
/// signatures are short, and this bounds the work per message.
pub(crate) const MAX_CHARS: usize = 2048;

/// Appends the normalised form of `text` (its first [`MAX_CHARS`] characters) to
/// `out`: no leading or trailing space, single spaces between words.
pub(crate) fn normalize_into(text: &str, out: &mut String) {
    normalize_first(text, MAX_CHARS, out);
}

/// The normalised form of all of `text` (whose size the caller bounds), for keyword
/// scans that padding must not defeat.
pub(crate) fn normalize_whole(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    normalize_first(text, usize::MAX, &mut out);
    out
}

fn normalize_first(text: &str, max_chars: usize, out: &mut String) {
    let start = out.len();
    let mut gap = false;
    let mut han = false;
    for c in text.chars().take(max_chars).map(fold_width) {
        if c.is_alphanumeric() {
            if gap && out.len() > start {
                out.push(' ');
            }
            gap = false;
            han |= is_cjk(c);
            out.extend(c.to_lowercase());
        } else {
            gap = true;
        }
    }
    if han {
        // Same length in characters; only mapped Han characters change.
        let folded = fast2s::convert(out.get(start..).unwrap_or(""));
        out.truncate(start);
        out.push_str(&folded);
    }
}

/// The normalised form of `text` (see [`normalize_into`]).
pub(crate) fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    normalize_into(text, &mut out);
    out
}

/// Full-width ASCII (U+FF01–U+FF5E) to ASCII, the ideographic space to a space.
fn fold_width(c: char) -> char {
    match u32::from(c) {
        v @ 0xFF01..=0xFF5E => char::from_u32(v - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    }
}

/// Scripts written without spaces between words (Han, kana, Hangul): matched by
/// character unigrams and bigrams instead of Latin-style trigrams.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF
        | 0xAC00..=0xD7AF | 0x20000..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_width_and_punctuation() {
        assert_eq!(normalize("  Hello,   WORLD!! "), "hello world");
        assert_eq!(normalize("ＡＢＣ１２３？"), "abc123");
        assert_eq!(normalize("怎么　退款？？请问"), "怎么 退款 请问");
        assert_eq!(normalize("Straße ÉCOLE"), "straße école");
        assert_eq!(normalize("...!!!"), "");
    }

    #[test]
    fn folds_traditional_to_simplified() {
        assert_eq!(normalize("可以換貨嗎？"), "可以换货吗");
        assert_eq!(normalize("發票 Invoice"), "发票 invoice");
        assert_eq!(normalize("退款"), "退款");
    }

    #[test]
    fn bounds_the_characters_read() {
        let long = "a".repeat(MAX_CHARS * 2);
        assert_eq!(normalize(&long).len(), MAX_CHARS);
        assert_eq!(normalize_whole(&long).len(), MAX_CHARS * 2);
    }

    #[test]
    fn cjk_detection() {
        assert!(is_cjk('退'));
        assert!(is_cjk('カ'));
        assert!(is_cjk('한'));
        assert!(!is_cjk('a'));
        assert!(!is_cjk('1'));
    }
}
