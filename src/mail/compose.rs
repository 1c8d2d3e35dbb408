//! The text of a mail (sans-IO): subject and plain-text body of an offline
//! notification or a reply digest.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

/// One quoted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// Its sequence number in the conversation.
    pub seq: u64,
    /// When it was stored (Unix ms).
    pub time_ms: u64,
    /// Who wrote it, as shown.
    pub who: String,
    /// The text, already cut to `email.max_message_chars`.
    pub text: String,
}

/// The text of a message as a mail quotes it: at most `max` characters (an ellipsis
/// marks a cut), structured content named rather than dumped.
pub(crate) fn quote(content_type: u8, body: &str, max: usize) -> String {
    use crate::protocol::messages::content;
    let text = match content_type {
        content::JSON => return "[a structured message: open the conversation to see it]".into(),
        content::ATTACHMENT => {
            let name = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_owned))
                .unwrap_or_default();
            format!("[attachment] {name}")
        }
        _ => body.to_owned(),
    };
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `2026-12-07 01:02:03 UTC`.
fn when(time_ms: u64) -> String {
    let t =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(time_ms)).to_string();
    format!("{} UTC", t.trim_end_matches('Z').replace('T', " "))
}

fn lines(out: &mut String, lines: &[Line], more: u64) {
    for l in lines {
        let _ = write!(out, "[{}] {}:", when(l.time_ms), l.who);
        for (i, text_line) in l.text.lines().enumerate() {
            let sep = if i == 0 { " " } else { "    " };
            let _ = writeln!(out, "{sep}{text_line}");
        }
        if l.text.lines().next().is_none() {
            out.push('\n');
        }
    }
    if more > 0 {
        let s = if more == 1 { "" } else { "s" };
        let _ = writeln!(out, "… and {more} more message{s}.");
    }
}

fn link(out: &mut String, chat_url: Option<&str>, conversation: u64, what: &str) {
    if let Some(url) = chat_url {
        let url = url.replace("{conversation}", &conversation.to_string());
        let _ = write!(out, "\n{what}: {url}\n");
    }
}

/// What an offline notification says about its conversation.
#[derive(Debug)]
pub(crate) struct About<'a> {
    /// The conversation id.
    pub conversation: u64,
    /// Its tenant (may be empty).
    pub tenant: &'a str,
    /// The group it waits in.
    pub group: &'a str,
    /// The visitor's user id.
    pub visitor: &'a str,
    /// The visitor's name (profile, else token), if any.
    pub name: Option<&'a str>,
    /// The visitor's email address from the profile, if any.
    pub email: Option<&'a str>,
}

/// Subject and body of an offline notification.
pub(crate) fn offline(
    about: &About<'_>,
    quoted: &[Line],
    more: u64,
    chat_url: Option<&str>,
) -> (String, String) {
    let who = about.name.unwrap_or(about.visitor);
    let subject = format!(
        "Offline message from {who} (conversation {}, group {})",
        about.conversation, about.group
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "A visitor wrote while no agent of group \"{}\" was online. The conversation \
         stays open and is served when an agent comes online.\n",
        about.group
    );
    let _ = writeln!(out, "Conversation: {}", about.conversation);
    if !about.tenant.is_empty() {
        let _ = writeln!(out, "Tenant: {}", about.tenant);
    }
    let _ = writeln!(out, "Group: {}", about.group);
    let _ = write!(out, "Visitor: ");
    if let Some(name) = about.name {
        let _ = write!(out, "{name} ");
    }
    if let Some(email) = about.email {
        let _ = write!(out, "<{email}> ");
    }
    let _ = writeln!(out, "(id {})\n", about.visitor);
    lines(&mut out, quoted, more);
    link(
        &mut out,
        chat_url,
        about.conversation,
        "Open the conversation",
    );
    (subject, out)
}

/// Subject and body of a reply digest to the visitor.
pub(crate) fn digest(
    conversation: u64,
    name: Option<&str>,
    quoted: &[Line],
    more: u64,
    chat_url: Option<&str>,
) -> (String, String) {
    let n = quoted.len() as u64 + more;
    let s = if n == 1 { "y" } else { "ies" };
    let subject = format!("{n} new repl{s} in your conversation {conversation}");
    let mut out = String::new();
    match name {
        Some(name) => {
            let _ = writeln!(out, "Hello {name},\n");
        }
        None => out.push_str("Hello,\n\n"),
    }
    let _ = writeln!(
        out,
        "you have {n} new repl{s} in your conversation {conversation} while you were away:\n"
    );
    lines(&mut out, quoted, more);
    link(
        &mut out,
        chat_url,
        conversation,
        "Continue the conversation",
    );
    (subject, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::content;

    fn line(seq: u64, who: &str, text: &str) -> Line {
        Line {
            seq,
            time_ms: 1_765_000_000_000 + seq * 1000,
            who: who.into(),
            text: text.into(),
        }
    }

    #[test]
    fn quotes_are_cut_by_characters_and_structured_content_is_named() {
        assert_eq!(quote(content::TEXT, "héllo", 3), "hél…");
        assert_eq!(quote(content::TEXT, "hello", 5), "hello");
        assert!(quote(content::JSON, "{}", 100).starts_with("[a structured"));
        assert_eq!(
            quote(content::ATTACHMENT, r#"{"id":"x","name":"cv.pdf"}"#, 100),
            "[attachment] cv.pdf"
        );
    }

    #[test]
    fn an_offline_notification_names_visitor_group_and_texts() {
        let about = About {
            conversation: 42,
            tenant: "acme",
            group: "sales",
            visitor: "v1",
            name: Some("Ann"),
            email: Some("ann@example.com"),
        };
        let (subject, body) = offline(
            &about,
            &[line(1, "Ann", "hello\nanyone?")],
            2,
            Some("https://x.example/c/{conversation}"),
        );
        assert_eq!(
            subject,
            "Offline message from Ann (conversation 42, group sales)"
        );
        for want in [
            "Conversation: 42",
            "Tenant: acme",
            "Visitor: Ann <ann@example.com> (id v1)",
            "UTC] Ann: hello\n    anyone?\n",
            "and 2 more messages.",
            "https://x.example/c/42",
        ] {
            assert!(body.contains(want), "{want:?} in {body}");
        }
    }

    #[test]
    fn a_digest_counts_its_replies() {
        let (subject, body) = digest(7, None, &[line(3, "Bob", "one")], 0, None);
        assert_eq!(subject, "1 new reply in your conversation 7");
        assert!(body.starts_with("Hello,\n"), "{body}");
        assert!(body.contains("Bob: one"), "{body}");
        let (subject, _) = digest(7, Some("Ann"), &[line(3, "Bob", "one")], 1, None);
        assert_eq!(subject, "2 new replies in your conversation 7");
    }
}
