//! Journal records to webhook events (sans-IO): fed every record in journal order,
//! it keeps what each conversation's later records do not repeat (tenant, visitor,
//! group, agent) and writes the JSON of each event an endpoint wants.
//!
//! Retention compaction copies a kept conversation's old records to the end of the
//! journal (JOURNAL.md section 5); each conversation's last (seq, kind) seen tells such
//! a copy from news, so a copy is never sent again. The event types and fields are
//! documented in `proto-spec/WEBHOOKS.md`.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::config::WebhookConfig;
use crate::journal::RecordRef;
use crate::protocol::Kind;
use crate::protocol::messages::{content, flags, role};
use crate::service::record::{self, Body, RecordKind, order_key};

/// Which events one endpoint takes.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    types: Vec<String>,
    tenant: Option<String>,
    include_notes: bool,
}

impl Filter {
    /// The filter of an endpoint's configuration.
    pub(crate) fn new(cfg: &WebhookConfig) -> Self {
        Self {
            types: cfg.events.clone(),
            tenant: cfg.tenant.clone(),
            include_notes: cfg.include_notes,
        }
    }

    fn wants(&self, event: &str, tenant: &str) -> bool {
        (self.types.is_empty()
            || self
                .types
                .iter()
                .any(|p| crate::config::glob_match(p, event)))
            && self.tenant.as_deref().is_none_or(|t| t == tenant)
    }
}

/// What the outbox remembers of one conversation.
#[derive(Debug, Clone, Default)]
struct Conv {
    tenant: String,
    visitor: String,
    visitor_name: String,
    group: String,
    /// The agent or bot serving it now: (user id, display name).
    agent: Option<(String, String)>,
    /// Order key of the newest record applied ([`order_key`]).
    last: u64,
}

/// A user in an event.
#[derive(Debug, Serialize)]
struct User<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
}

/// The `data` of an event: the fields its type uses (WEBHOOKS.md).
#[derive(Debug, Serialize, Default)]
struct Data<'a> {
    id: String,
    tenant: &'a str,
    conversation: String,
    seq: String,
    time_ms: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    visitor: Option<User<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender: Option<User<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<User<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_agent: Option<User<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_msg_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_reply: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flagged: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    private: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<&'a str>,
}

/// One event: Standard Webhooks' payload shape.
#[derive(Debug, Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    data: Data<'a>,
}

/// The name of a role code.
pub(crate) fn role_name(code: u8) -> &'static str {
    match code {
        role::VISITOR => "visitor",
        role::AGENT => "agent",
        role::BOT => "bot",
        role::ADMIN => "admin",
        role::SYSTEM => "system",
        _ => "unknown",
    }
}

fn content_name(code: u8) -> &'static str {
    match code {
        content::TEXT => "text",
        content::MARKDOWN => "markdown",
        content::URL => "url",
        content::JSON => "json",
        content::ATTACHMENT => "attachment",
        content::PROFILE => "profile",
        _ => "unknown",
    }
}

/// RFC 3339 with milliseconds, UTC.
fn rfc3339(time_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(time_ms)).to_string()
}

/// Counts of what [`Events::feed`] met besides events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fed {
    /// Events written.
    pub events: usize,
    /// Records skipped as compaction copies.
    pub copies: usize,
    /// Records whose body did not validate (logged by the caller).
    pub unreadable: usize,
}

/// The conversations' remembered state, fed in journal order.
#[derive(Debug, Default)]
pub(crate) struct Events {
    convs: HashMap<u64, Conv>,
}

impl Events {
    /// Conversations remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.convs.len()
    }

    /// Forgets conversations `live` says have no record left in the journal.
    pub(crate) fn retain(&mut self, live: impl Fn(u64) -> bool) {
        self.convs.retain(|c, _| live(*c));
    }

    /// Applies one record; with `filter`, appends the JSON of each event it makes
    /// that the filter wants to `out` (one `Vec` per event). Without, only the state
    /// moves (rebuilding it up to a cursor after a restart).
    pub(crate) fn feed(
        &mut self,
        r: RecordRef<'_>,
        filter: Option<&Filter>,
        out: &mut Vec<Vec<u8>>,
    ) -> Fed {
        let mut fed = Fed::default();
        let Ok((kind, body)) = record::decode(r.kind, r.body) else {
            fed.unreadable = 1;
            return fed;
        };
        let key = order_key(kind, r.seq);
        let known = self.convs.contains_key(&r.conversation);
        let conv = self.convs.entry(r.conversation).or_default();
        if known && key <= conv.last {
            fed.copies = 1;
            return fed;
        }
        conv.last = key;
        let made = apply(conv, kind, &body);
        let Some(filter) = filter else {
            return fed;
        };
        for (what, previous) in made {
            if !filter.wants(what.name(), &conv.tenant) {
                continue;
            }
            if what == Made::Note && !filter.include_notes {
                continue;
            }
            let event = render(what, previous.as_ref(), r, conv, &body);
            if let Ok(bytes) = serde_json::to_vec(&event) {
                out.push(bytes);
                fed.events += 1;
            }
        }
        fed
    }
}

/// The events one record makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Made {
    Opened,
    Queued,
    Assigned,
    /// Assigned straight from one agent to another; the previous agent is carried.
    Transferred,
    Closed,
    Abandoned,
    Rated,
    Message,
    /// The same visitor message again, left while nobody of its group was online.
    Offline,
    Note,
}

impl Made {
    fn name(self) -> &'static str {
        match self {
            Made::Opened => "conversation.opened",
            Made::Queued => "conversation.queued",
            Made::Assigned => "conversation.assigned",
            Made::Transferred => "conversation.transferred",
            Made::Closed => "conversation.closed",
            Made::Abandoned => "conversation.abandoned",
            Made::Rated => "conversation.rated",
            Made::Message | Made::Note => "message.created",
            Made::Offline => "message.offline",
        }
    }
}

/// Reason of a server close whose visitor left while queued (PROTOCOL.md 4.16).
const ABANDONED: &str = "abandoned";

/// The agent a transfer took the conversation from: (user id, display name).
type Previous = Option<(String, String)>;

/// Moves the conversation's state by one record; the events it makes (at most two),
/// a transfer with the agent it took the conversation from.
fn apply(conv: &mut Conv, kind: RecordKind, body: &Body) -> Vec<(Made, Previous)> {
    match kind {
        RecordKind::Opened => {
            conv.tenant.clone_from(&body.tenant);
            conv.visitor.clone_from(&body.visitor);
            conv.visitor_name.clone_from(&body.visitor_name);
            conv.group.clone_from(&body.group);
            vec![(Made::Opened, None)]
        }
        RecordKind::Requeued => {
            conv.group.clone_from(&body.group);
            conv.agent = None;
            vec![(Made::Queued, None)]
        }
        RecordKind::Entry => {
            let e = &body.entry;
            match Kind::from_u8(e.kind) {
                Some(Kind::Send)
                    if e.sender_role == role::VISITOR && e.flags & flags::OFFLINE != 0 =>
                {
                    vec![(Made::Message, None), (Made::Offline, None)]
                }
                Some(Kind::Send) => vec![(Made::Message, None)],
                Some(Kind::Note) => vec![(Made::Note, None)],
                Some(Kind::Queued) => {
                    conv.group.clone_from(&e.body);
                    conv.agent = None;
                    vec![(Made::Queued, None)]
                }
                Some(Kind::Assigned) => {
                    if !body.group.is_empty() {
                        conv.group.clone_from(&body.group);
                    }
                    let before = conv.agent.replace((e.sender.clone(), e.body.clone()));
                    match before.filter(|(id, _)| *id != e.sender) {
                        Some(prev) => vec![(Made::Transferred, Some(prev))],
                        None => vec![(Made::Assigned, None)],
                    }
                }
                Some(Kind::Close) if e.sender_role == role::SYSTEM && e.body == ABANDONED => {
                    vec![(Made::Closed, None), (Made::Abandoned, None)]
                }
                Some(Kind::Close) => vec![(Made::Closed, None)],
                Some(Kind::Rate) => vec![(Made::Rated, None)],
                _ => Vec::new(),
            }
        }
        // Salvage's records: no event (WEBHOOKS.md).
        RecordKind::Gap | RecordKind::Reserved | RecordKind::Orphaned => Vec::new(),
    }
}

/// The event `what` of record `r`, the conversation's state already moved by it.
fn render<'a>(
    what: Made,
    previous: Option<&'a (String, String)>,
    r: RecordRef<'_>,
    conv: &'a Conv,
    body: &'a Body,
) -> Event<'a> {
    let e = &body.entry;
    let suffix = what.name().replace('.', "_");
    let mut data = Data {
        id: format!("evt_{}_{}_{suffix}", r.conversation, r.seq),
        tenant: &conv.tenant,
        conversation: r.conversation.to_string(),
        seq: r.seq.to_string(),
        time_ms: r.time_ms.to_string(),
        group: &conv.group,
        ..Data::default()
    };
    let user = |role: Option<&'static str>, id: &'a str, name: &'a str| User { role, id, name };
    match what {
        Made::Opened => {
            data.visitor = Some(user(None, &conv.visitor, &conv.visitor_name));
        }
        Made::Queued => {}
        Made::Assigned | Made::Transferred => {
            data.agent = Some(user(None, &e.sender, &e.body));
            data.previous_agent = previous.map(|(id, name)| user(None, id, name));
        }
        Made::Closed | Made::Abandoned => {
            data.sender = Some(user(Some(role_name(e.sender_role)), &e.sender, ""));
            data.reason = Some(&e.body);
        }
        Made::Rated => {
            let name = &conv.visitor_name;
            data.sender = Some(user(Some(role_name(e.sender_role)), &e.sender, name));
            data.score = Some(e.content_type);
            data.comment = Some(&e.body);
        }
        Made::Message | Made::Offline | Made::Note => {
            let name = match e.sender_role {
                role::VISITOR => conv.visitor_name.as_str(),
                _ => conv
                    .agent
                    .as_ref()
                    .filter(|(id, _)| *id == e.sender)
                    .map_or("", |(_, n)| n.as_str()),
            };
            data.sender = Some(user(Some(role_name(e.sender_role)), &e.sender, name));
            data.content_type = Some(content_name(e.content_type));
            data.body = Some(&e.body);
            if body.client_msg_id != 0 {
                data.client_msg_id = Some(body.client_msg_id.to_string());
            }
            data.auto_reply = Some(e.flags & flags::AUTO_REPLY != 0);
            data.flagged = Some(e.flags & flags::FLAGGED != 0);
            data.private = Some(what == Made::Note);
        }
    }
    Event {
        kind: what.name(),
        timestamp: rfc3339(r.time_ms),
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::Entry;
    use crate::service::record::{Record, record};
    use serde_json::Value;

    #[test]
    fn every_content_code_has_its_name() {
        let names: Vec<&str> = (content::TEXT..=content::PROFILE)
            .map(content_name)
            .collect();
        assert_eq!(
            names,
            ["text", "markdown", "url", "json", "attachment", "profile"]
        );
        assert_eq!(content_name(0), "unknown");
    }

    fn filter(types: &[&str], tenant: Option<&str>, notes: bool) -> Filter {
        Filter {
            types: types.iter().map(|s| (*s).to_owned()).collect(),
            tenant: tenant.map(str::to_owned),
            include_notes: notes,
        }
    }

    fn opened(conv: u64, tenant: &str) -> Record {
        let body = Body {
            tenant: tenant.into(),
            visitor: "v1".into(),
            visitor_name: "Ann".into(),
            group: "sales".into(),
            ..Body::default()
        };
        record(conv, 0, 1_000, RecordKind::Opened, &body)
    }

    fn entry(conv: u64, seq: u64, kind: Kind, sender_role: u8, sender: &str, text: &str) -> Record {
        let body = Body {
            group: if kind == Kind::Assigned {
                "sales".into()
            } else {
                String::new()
            },
            client_msg_id: if kind == Kind::Send { 40 + seq } else { 0 },
            entry: Entry {
                seq,
                time_ms: 1_000 + seq,
                kind: kind.as_u8(),
                sender_role,
                content_type: if kind == Kind::Rate { 4 } else { content::TEXT },
                flags: if kind == Kind::Note {
                    flags::PRIVATE
                } else {
                    0
                },
                sender: sender.into(),
                body: text.into(),
            },
            ..Body::default()
        };
        record(conv, seq, 1_000 + seq, RecordKind::Entry, &body)
    }

    fn feed_all(ev: &mut Events, records: &[Record], f: &Filter) -> Vec<Value> {
        let mut out = Vec::new();
        for r in records {
            ev.feed(r.borrowed(), Some(f), &mut out);
        }
        out.iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect()
    }

    fn types(events: &[Value]) -> Vec<&str> {
        events.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    /// A whole conversation: opened, a message, assigned, a transfer, a note, closed,
    /// rated.
    fn story(conv: u64, tenant: &str) -> Vec<Record> {
        vec![
            opened(conv, tenant),
            entry(conv, 1, Kind::Send, role::VISITOR, "v1", "hello"),
            entry(conv, 2, Kind::Assigned, role::SYSTEM, "a1", "Bob"),
            entry(conv, 3, Kind::Send, role::AGENT, "a1", "hi, Bob here"),
            entry(conv, 4, Kind::Assigned, role::SYSTEM, "a2", "Eve"),
            entry(conv, 5, Kind::Note, role::AGENT, "a2", "VIP"),
            entry(conv, 6, Kind::Close, role::AGENT, "a2", "solved"),
            entry(conv, 7, Kind::Rate, role::VISITOR, "v1", "great"),
        ]
    }

    #[test]
    fn a_conversation_makes_its_events_in_order() {
        let mut ev = Events::default();
        let got = feed_all(&mut ev, &story(7, "acme"), &filter(&[], None, false));
        assert_eq!(
            types(&got),
            [
                "conversation.opened",
                "message.created",
                "conversation.assigned",
                "message.created",
                "conversation.transferred",
                "conversation.closed",
                "conversation.rated",
            ]
        );
        let opened = &got[0];
        assert_eq!(opened["timestamp"], "1970-01-01T00:00:01.000Z");
        assert_eq!(opened["data"]["conversation"], "7", "u64 as a string");
        assert_eq!(opened["data"]["seq"], "0");
        assert_eq!(opened["data"]["tenant"], "acme");
        assert_eq!(opened["data"]["group"], "sales");
        assert_eq!(opened["data"]["visitor"]["name"], "Ann");
        let msg = &got[1]["data"];
        assert_eq!(msg["sender"]["role"], "visitor");
        assert_eq!(msg["sender"]["name"], "Ann");
        assert_eq!(msg["body"], "hello");
        assert_eq!(msg["content_type"], "text");
        assert_eq!(msg["client_msg_id"], "41");
        assert_eq!(msg["time_ms"], "1001");
        assert_eq!(msg["id"], "evt_7_1_message_created");
        assert_eq!(got[3]["data"]["sender"]["name"], "Bob", "the agent's name");
        let transfer = &got[4]["data"];
        assert_eq!(transfer["agent"]["id"], "a2");
        assert_eq!(transfer["previous_agent"]["id"], "a1");
        assert_eq!(got[5]["data"]["reason"], "solved");
        assert_eq!(got[5]["data"]["sender"]["role"], "agent");
        assert_eq!(got[6]["data"]["score"], 4);
        assert_eq!(got[6]["data"]["comment"], "great");
    }

    #[test]
    fn a_profile_is_a_message_created_with_content_type_profile() {
        let mut ev = Events::default();
        let text = r#"{"email":"ann@example.com","fields":{"plan":"pro"}}"#;
        let mut profile = entry(7, 1, Kind::Send, role::VISITOR, "v1", text);
        let (kind, mut body) = crate::service::record::decode(profile.kind, &profile.body).unwrap();
        body.entry.content_type = content::PROFILE;
        profile = record(7, 1, 1_001, kind, &body);
        let got = feed_all(
            &mut ev,
            &[opened(7, "acme"), profile],
            &filter(&[], None, false),
        );
        assert_eq!(types(&got), ["conversation.opened", "message.created"]);
        let msg = &got[1]["data"];
        assert_eq!(msg["content_type"], "profile");
        assert_eq!(msg["body"], text, "the JSON text, as stored");
        assert_eq!(msg["sender"]["role"], "visitor");
        assert_eq!(msg["sender"]["id"], "v1");
    }

    #[test]
    fn notes_only_when_asked_and_flagged_private() {
        let mut ev = Events::default();
        let got = feed_all(
            &mut ev,
            &story(7, "acme"),
            &filter(&["message.*"], None, true),
        );
        assert_eq!(got.len(), 3);
        assert_eq!(got[2]["data"]["private"], true);
        assert_eq!(got[2]["data"]["body"], "VIP");
        assert_eq!(got[0]["data"]["private"], false);
    }

    #[test]
    fn filters_by_type_glob_and_tenant() {
        let mut ev = Events::default();
        let mut records = story(1, "acme");
        records.extend(story(2, "other"));
        let got = feed_all(
            &mut ev,
            &records,
            &filter(&["conversation.*"], Some("other"), false),
        );
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|e| e["data"]["conversation"] == "2"));
        assert!(
            got.iter()
                .all(|e| e["type"].as_str().unwrap().starts_with("conversation."))
        );
    }

    #[test]
    fn an_abandoned_queue_closes_twice_named() {
        let mut ev = Events::default();
        let records = [
            opened(3, ""),
            entry(3, 1, Kind::Send, role::VISITOR, "v1", "anyone?"),
            entry(3, 2, Kind::Close, role::SYSTEM, "", "abandoned"),
        ];
        let got = feed_all(&mut ev, &records, &filter(&[], None, false));
        assert_eq!(
            types(&got),
            [
                "conversation.opened",
                "message.created",
                "conversation.closed",
                "conversation.abandoned"
            ]
        );
        assert_eq!(got[3]["data"]["sender"]["role"], "system");
    }

    #[test]
    fn requeues_clear_the_agent_so_the_next_assignment_is_no_transfer() {
        let mut ev = Events::default();
        let mut queued = entry(4, 3, Kind::Queued, role::SYSTEM, "", "billing");
        queued.kind = RecordKind::Entry as u8;
        let records = [
            opened(4, ""),
            entry(4, 1, Kind::Send, role::VISITOR, "v1", "hi"),
            entry(4, 2, Kind::Assigned, role::SYSTEM, "a1", "Bob"),
            queued,
            entry(4, 4, Kind::Assigned, role::SYSTEM, "a2", "Eve"),
        ];
        let got = feed_all(&mut ev, &records, &filter(&[], None, false));
        assert_eq!(
            types(&got),
            [
                "conversation.opened",
                "message.created",
                "conversation.assigned",
                "conversation.queued",
                "conversation.assigned"
            ]
        );
        assert_eq!(got[3]["data"]["group"], "billing");
    }

    /// A visitor message flagged OFFLINE: `message.offline` right after its
    /// `message.created`, with the same fields.
    #[test]
    fn an_offline_message_is_created_then_offline() {
        let mut ev = Events::default();
        let mut offline = entry(5, 1, Kind::Send, role::VISITOR, "v1", "anyone?");
        let mut body = record::decode(offline.kind, &offline.body).unwrap().1;
        body.entry.flags = flags::OFFLINE;
        offline = record(5, 1, 1_001, RecordKind::Entry, &body);
        let mut agent = entry(5, 3, Kind::Send, role::AGENT, "a1", "here");
        let mut body = record::decode(agent.kind, &agent.body).unwrap().1;
        body.entry.flags = flags::OFFLINE;
        agent = record(5, 3, 1_003, RecordKind::Entry, &body);
        let records = [
            opened(5, "t"),
            offline,
            entry(5, 2, Kind::Assigned, role::SYSTEM, "a1", "Bob"),
            agent,
        ];
        let got = feed_all(&mut ev, &records, &filter(&[], None, false));
        assert_eq!(
            types(&got),
            [
                "conversation.opened",
                "message.created",
                "message.offline",
                "conversation.assigned",
                "message.created",
            ],
            "only a visitor's message is an offline one"
        );
        assert_eq!(got[2]["data"]["id"], "evt_5_1_message_offline");
        assert_eq!(got[2]["data"]["body"], "anyone?");
        let only = feed_all(
            &mut Events::default(),
            &records,
            &filter(&["message.offline"], None, false),
        );
        assert_eq!(types(&only), ["message.offline"]);
    }

    /// Compaction copies old records after newer ones: they make no event again.
    #[test]
    fn compaction_copies_make_no_events() {
        let mut ev = Events::default();
        let records = story(9, "t");
        let f = filter(&[], None, false);
        assert_eq!(feed_all(&mut ev, &records, &f).len(), 7);
        let mut out = Vec::new();
        let mut copies = 0;
        for r in records.iter().take(4) {
            copies += ev.feed(r.borrowed(), Some(&f), &mut out).copies;
        }
        assert!(out.is_empty());
        assert_eq!(copies, 4);
        // State rebuilt without a filter, then the rest with one: same as in one go.
        let mut rebuilt = Events::default();
        for r in records.iter().take(4) {
            rebuilt.feed(r.borrowed(), None, &mut out);
        }
        assert!(out.is_empty());
        let rest = feed_all(&mut rebuilt, &records[4..], &f);
        let mut whole = Events::default();
        let all = feed_all(&mut whole, &records, &f);
        assert_eq!(rest, all[4..]);
    }

    #[test]
    fn unreadable_bodies_are_counted_not_fatal() {
        let mut ev = Events::default();
        let mut bad = entry(1, 1, Kind::Send, role::VISITOR, "v", "x");
        bad.body = bytes::Bytes::from_static(&[1, 2, 3]);
        let mut out = Vec::new();
        let fed = ev.feed(bad.borrowed(), Some(&filter(&[], None, false)), &mut out);
        assert_eq!(fed.unreadable, 1);
        assert!(out.is_empty());
        ev.retain(|_| false);
        assert_eq!(ev.len(), 0);
    }
}

/// Records of every event type, for the example check.
#[cfg(test)]
mod tests_support {
    use super::*;
    use crate::protocol::messages::Entry;
    use crate::service::record::record;

    fn entry(
        conv: u64,
        seq: u64,
        kind: Kind,
        sender_role: u8,
        sender: &str,
        text: &str,
    ) -> Vec<u8> {
        let body = Body {
            group: "g".into(),
            client_msg_id: 5,
            entry: Entry {
                seq,
                time_ms: seq,
                kind: kind.as_u8(),
                sender_role,
                content_type: 1,
                // The visitor's message is an offline one: message.offline too.
                flags: if kind == Kind::Send && sender_role == role::VISITOR {
                    crate::protocol::messages::flags::OFFLINE
                } else {
                    0
                },
                sender: sender.into(),
                body: text.into(),
            },
            ..Body::default()
        };
        record(conv, seq, seq, RecordKind::Entry, &body)
            .body
            .to_vec()
    }

    /// One event of each type, as JSON (one of each: the first of a type made).
    pub(super) fn all_kinds() -> Vec<serde_json::Value> {
        let opened = Body {
            tenant: "t".into(),
            visitor: "v".into(),
            visitor_name: "V".into(),
            group: "g".into(),
            ..Body::default()
        };
        let mut records = vec![(
            0u64,
            RecordKind::Opened,
            record(1, 0, 0, RecordKind::Opened, &opened).body.to_vec(),
        )];
        let steps = [
            (1, Kind::Send, role::VISITOR, "v", "hi"),
            (2, Kind::Assigned, role::SYSTEM, "a1", "A"),
            (3, Kind::Assigned, role::SYSTEM, "a2", "B"),
            (4, Kind::Queued, role::SYSTEM, "", "g"),
            (5, Kind::Close, role::SYSTEM, "", "abandoned"),
            (6, Kind::Rate, role::VISITOR, "v", "ok"),
        ];
        for (seq, kind, r, sender, text) in steps {
            records.push((seq, RecordKind::Entry, entry(1, seq, kind, r, sender, text)));
        }
        let mut ev = Events::default();
        let filter = Filter {
            types: Vec::new(),
            tenant: None,
            include_notes: true,
        };
        let mut out = Vec::new();
        for (seq, kind, body) in &records {
            let r = RecordRef {
                conversation: 1,
                seq: *seq,
                time_ms: *seq,
                kind: *kind as u8,
                body,
            };
            ev.feed(r, Some(&filter), &mut out);
        }
        let mut seen = std::collections::BTreeSet::new();
        out.iter()
            .map(|b| serde_json::from_slice::<serde_json::Value>(b).unwrap())
            .filter(|e| seen.insert(e["type"].as_str().unwrap().to_owned()))
            .collect()
    }
}

/// `proto-spec/WEBHOOKS.md`'s examples have the fields the code writes, type by type.
#[cfg(test)]
mod spec_examples {
    use super::tests_support::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn keys(v: &serde_json::Value) -> BTreeSet<String> {
        v["data"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn documented_examples_match_the_events_made() {
        let doc = include_str!("../../proto-spec/WEBHOOKS.md");
        let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for block in doc.split("```json\n").skip(1) {
            let json = block.split("```").next().unwrap();
            let events: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
            for e in events {
                documented.insert(e["type"].as_str().unwrap().to_owned(), keys(&e));
            }
        }
        let made = all_kinds();
        assert_eq!(made.len(), 9, "every type is made");
        for e in &made {
            let t = e["type"].as_str().unwrap();
            let doc_keys = documented
                .get(t)
                .unwrap_or_else(|| panic!("{t} has no example in WEBHOOKS.md"));
            assert_eq!(&keys(e), doc_keys, "fields of {t}");
        }
    }
}
