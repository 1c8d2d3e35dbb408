//! `[web.sites.widget]`: how the visitor widget (`/widget.js`) looks and behaves on
//! one site. Public: served as JSON by `GET /web/v1/sites/{site}/widget`, so it holds
//! no secret. Every key is optional.

use serde::{Deserialize, Serialize};

/// Most pre-chat fields.
pub const MAX_PRE_CHAT_FIELDS: usize = 8;
/// Most business-hours lines.
pub const MAX_HOURS: usize = 14;
/// Longest title, greeting or label, in bytes.
pub const MAX_TEXT_BYTES: usize = 512;

/// The widget's settings for one site (all optional; the defaults give a blue
/// launcher bottom right, the browser's language, no pre-chat form, always open).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WidgetSettings {
    /// Header title (empty: "Chat with us" / "在线客服").
    pub title: String,
    /// First line shown in an empty conversation (empty: none).
    pub greeting: String,
    /// Accent colour, `#rrggbb` (default `#1f5fbf`; white text must be readable on it).
    pub color: String,
    /// `"right"` (default) or `"left"`: the bottom corner of the launcher.
    pub position: String,
    /// `"auto"` (default: the browser's language), `"en"` or `"zh-CN"`.
    pub language: String,
    /// The pre-chat form (empty: none): asked before the first message, sent as the
    /// visitor's profile (`PROFILE`, content type 6).
    pub pre_chat: Vec<PreChatField>,
    /// Time zone of `hours`: an IANA name (`"Asia/Shanghai"`, evaluated by the
    /// browser's `Intl`), `"UTC"` (default) or a fixed offset `"+08:00"`.
    pub timezone: String,
    /// Business hours, e.g. `["mon-fri 09:00-18:00", "sat 10:00-14:00"]` (empty:
    /// always open). Outside them the widget shows "away" and offers to leave a
    /// message, whatever the agents' presence.
    pub hours: Vec<String>,
    /// Whether the widget adds the page the chat started on to the visitor's
    /// profile (`fields.page_url`, `referrer`, `browser`: what the agent's context
    /// card shows). Default true; false sends only what the visitor typed.
    pub context: bool,
}

impl Default for WidgetSettings {
    fn default() -> Self {
        Self {
            title: String::new(),
            greeting: String::new(),
            color: "#1f5fbf".into(),
            position: "right".into(),
            language: "auto".into(),
            pre_chat: Vec::new(),
            timezone: "UTC".into(),
            hours: Vec::new(),
            context: true,
        }
    }
}

/// One field of the pre-chat form.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PreChatField {
    /// `"name"` and `"email"` fill the profile's name and email; any other key (1 to
    /// 64 of `A-Z a-z 0-9 _ . -`) is a custom field of the profile.
    pub key: String,
    /// The label shown (empty: the built-in one for `name`/`email`, else the key).
    #[serde(default)]
    pub label: String,
    /// Whether the form needs it (default false).
    #[serde(default)]
    pub required: bool,
}

impl WidgetSettings {
    /// Checks what the types cannot: `(key, reason)` of the first problem.
    pub fn validate(&self, site: &str) -> Result<(), (&'static str, String)> {
        let text = |key: &'static str, s: &str| {
            if s.len() > MAX_TEXT_BYTES || s.chars().any(char::is_control) {
                return Err((
                    key,
                    format!("site {site:?}: at most {MAX_TEXT_BYTES} bytes, no control characters"),
                ));
            }
            Ok(())
        };
        text("web.sites.widget.title", &self.title)?;
        text("web.sites.widget.greeting", &self.greeting)?;
        if !valid_colour(&self.color) {
            return Err((
                "web.sites.widget.color",
                format!("site {site:?}: {:?} is not #rrggbb", self.color),
            ));
        }
        if !matches!(self.position.as_str(), "right" | "left") {
            return Err((
                "web.sites.widget.position",
                format!("site {site:?}: \"right\" or \"left\""),
            ));
        }
        if !matches!(self.language.as_str(), "auto" | "en" | "zh-CN") {
            return Err((
                "web.sites.widget.language",
                format!("site {site:?}: \"auto\", \"en\" or \"zh-CN\""),
            ));
        }
        if self.pre_chat.len() > MAX_PRE_CHAT_FIELDS {
            return Err((
                "web.sites.widget.pre_chat",
                format!("site {site:?}: at most {MAX_PRE_CHAT_FIELDS} fields"),
            ));
        }
        for (i, f) in self.pre_chat.iter().enumerate() {
            let key_ok = (1..=64).contains(&f.key.len())
                && f.key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !key_ok || self.pre_chat.iter().take(i).any(|g| g.key == f.key) {
                return Err((
                    "web.sites.widget.pre_chat",
                    format!(
                        "site {site:?}: key {:?}: 1 to 64 of A-Z a-z 0-9 _ . -, once",
                        f.key
                    ),
                ));
            }
            text("web.sites.widget.pre_chat", &f.label)?;
        }
        if !valid_timezone(&self.timezone) {
            return Err((
                "web.sites.widget.timezone",
                format!(
                    "site {site:?}: {:?}: an IANA name, \"UTC\" or \"+hh:mm\"",
                    self.timezone
                ),
            ));
        }
        if self.hours.len() > MAX_HOURS {
            return Err((
                "web.sites.widget.hours",
                format!("site {site:?}: at most {MAX_HOURS} lines"),
            ));
        }
        for line in &self.hours {
            if parse_hours(line).is_none() {
                return Err((
                    "web.sites.widget.hours",
                    format!(
                        "site {site:?}: {line:?} is not like \"mon-fri 09:00-18:00\" \
                         (days mon..sun, ranges or lists; hh:mm up to 24:00; an end before \
                         the start crosses midnight)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `#rrggbb`.
fn valid_colour(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s.bytes().skip(1).all(|b| b.is_ascii_hexdigit())
}

/// An IANA-looking name (`Area/City`, letters, digits, `_ + - /`), `UTC` or `±hh:mm`.
fn valid_timezone(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix('+').or_else(|| s.strip_prefix('-')) {
        return minutes(rest).is_some_and(|m| m <= 14 * 60);
    }
    (1..=64).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'/'))
}

/// `hh:mm` as minutes after midnight (up to 24:00).
fn minutes(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    (m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One business-hours line: the days it covers (bit 0 Monday) and the minutes
/// `[start, end)` after midnight. An end before the start crosses midnight: the span
/// starts on the named days and ends on the next (`fri 22:00-02:00` is Friday 22:00 to
/// Saturday 02:00). The widget parses the same grammar.
pub fn parse_hours(line: &str) -> Option<(u8, u32, u32)> {
    let (days, span) = line.trim().split_once(' ')?;
    let (start, end) = span.trim().split_once('-')?;
    let (start, end) = (minutes(start)?, minutes(end)?);
    // Equal ends say nothing; an overnight span ends by the next midnight.
    if start == end || (end < start && (start == 24 * 60 || end == 24 * 60)) {
        return None;
    }
    let day = |d: &str| DAYS.iter().position(|x| *x == d);
    let mut mask = 0u8;
    for part in days.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b) = (day(a)?, day(b)?);
        if a > b {
            return None;
        }
        for d in a..=b {
            mask |= 1 << d;
        }
    }
    Some((mask, start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(f: impl FnOnce(&mut WidgetSettings)) -> &'static str {
        let mut w = WidgetSettings::default();
        f(&mut w);
        w.validate("shop").unwrap_err().0
    }

    #[test]
    fn defaults_are_valid() {
        assert!(WidgetSettings::default().validate("shop").is_ok());
    }

    #[test]
    fn hours_parse() {
        assert_eq!(parse_hours("mon-fri 09:00-18:00"), Some((0x1f, 540, 1080)));
        assert_eq!(parse_hours("sat,sun 10:00-24:00"), Some((0x60, 600, 1440)));
        assert_eq!(parse_hours("wed 00:00-00:30"), Some((0x04, 0, 30)));
        // Overnight: Friday 22:00 to Saturday 02:00.
        assert_eq!(parse_hours("fri 22:00-02:00"), Some((0x10, 1320, 120)));
        assert_eq!(parse_hours("sun 18:00-00:00"), Some((0x40, 1080, 0)));
        for line in [
            "",
            "mon",
            "fri-mon 09:00-18:00",
            "mon 09:00-09:00",
            "mon 24:00-09:00",
            "mon 18:00-24:00x",
            "mon 9:00-18:00",
            "mon 09:00-24:01",
            "monday 09:00-18:00",
            "mon 09:60-10:00",
        ] {
            assert_eq!(parse_hours(line), None, "{line:?}");
        }
    }

    #[test]
    fn every_key_is_checked() {
        assert_eq!(bad(|w| w.color = "blue".into()), "web.sites.widget.color");
        assert_eq!(
            bad(|w| w.color = "#12345g".into()),
            "web.sites.widget.color"
        );
        assert_eq!(
            bad(|w| w.position = "top".into()),
            "web.sites.widget.position"
        );
        assert_eq!(
            bad(|w| w.language = "fr".into()),
            "web.sites.widget.language"
        );
        assert_eq!(bad(|w| w.title = "x".repeat(513)), "web.sites.widget.title");
        assert_eq!(
            bad(|w| w.greeting = "a\u{7}".into()),
            "web.sites.widget.greeting"
        );
        assert_eq!(
            bad(|w| w.timezone = "+15:00".into()),
            "web.sites.widget.timezone"
        );
        assert_eq!(
            bad(|w| w.timezone = "Asia/Shang hai".into()),
            "web.sites.widget.timezone"
        );
        assert_eq!(
            bad(|w| w.hours = vec!["mon-fri 9-5".into()]),
            "web.sites.widget.hours"
        );
        let field = |key: &str| PreChatField {
            key: key.into(),
            label: String::new(),
            required: false,
        };
        assert_eq!(
            bad(|w| w.pre_chat = vec![field("name"), field("name")]),
            "web.sites.widget.pre_chat"
        );
        assert_eq!(
            bad(|w| w.pre_chat = vec![field("a b")]),
            "web.sites.widget.pre_chat"
        );
        assert_eq!(
            bad(|w| w.pre_chat = (0..9).map(|i| field(&format!("f{i}"))).collect()),
            "web.sites.widget.pre_chat"
        );
        let mut ok = WidgetSettings {
            timezone: "Asia/Shanghai".into(),
            hours: vec!["mon-fri 09:00-18:00".into()],
            pre_chat: vec![field("name"), field("email"), field("order.id")],
            ..WidgetSettings::default()
        };
        assert!(ok.validate("shop").is_ok());
        ok.timezone = "-03:30".into();
        assert!(ok.validate("shop").is_ok());
    }

    #[test]
    fn toml_form() {
        let w: WidgetSettings = toml::from_str(
            "color = \"#aa0000\"\npre_chat = [{ key = \"email\", required = true }]\n",
        )
        .unwrap();
        assert_eq!(w.position, "right");
        assert!(w.pre_chat[0].required);
        assert!(toml::from_str::<WidgetSettings>("colour = \"#aa0000\"").is_err());
    }
}
