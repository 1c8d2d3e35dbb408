//! Attachments in a conversation: who may upload into it and download from it, and
//! which files its messages reference. The bytes are the files thread's
//! ([`crate::files`]); the shard only checks and hands the work on.

use super::history::may_read;
use super::{Conversation, Shard, State};
use crate::files::Upload;
use crate::protocol::ErrorCode;
use crate::protocol::Kind;
use crate::protocol::messages::{Entry, content, role};
use crate::service::{Download, Job};
use crate::service::{Effect, Sender, refuse};

/// A file an `ATTACHMENT` message of the conversation references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileRef {
    /// The message's sequence number.
    pub seq: u64,
    /// Lower-case hex SHA-256.
    pub id: String,
    /// File name.
    pub name: String,
    /// Media type.
    pub media_type: String,
}

impl Conversation {
    /// Notes the file an entry references (an `ATTACHMENT` message; anything else,
    /// or a body that is not the upload route's JSON, references none).
    pub(super) fn note_file(&mut self, e: &Entry) {
        if e.content_type != content::ATTACHMENT || e.kind != Kind::Send.as_u8() {
            return;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&e.body) else {
            return;
        };
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        if let (Some(id), Some(name), Some(media_type)) = (text("id"), text("name"), text("type")) {
            self.files.push(FileRef {
                seq: e.seq,
                id,
                name,
                media_type,
            });
        }
    }
}

impl Shard {
    /// An upload: the uploader must be able to `Send` into the open conversation (its
    /// visitor, its agent, or the system on behalf of an API key or admin); then the
    /// files thread stores the file and routes the message back here.
    pub(super) fn upload(&mut self, from: Sender, upload: Box<Upload>, out: &mut Vec<Effect>) {
        let conversation = upload.conversation;
        let Some(c) = self
            .convs
            .get(&conversation)
            .filter(|c| c.tenant == from.who.tenant && !c.orphan)
        else {
            return refuse(out, &from, ErrorCode::NotFound, conversation);
        };
        let party = (from.who == c.visitor && from.role == role::VISITOR)
            || c.is_agent(&from.who)
            || from.role == role::SYSTEM;
        if !party {
            return refuse(out, &from, ErrorCode::Forbidden, conversation);
        }
        if c.state == State::Closed {
            return refuse(out, &from, ErrorCode::Conflict, conversation);
        }
        out.push(Effect::Files(Job::Store { from, upload }));
    }

    /// A download: the reader must be able to read the transcript (as for `History`)
    /// and a message of the conversation must reference the file.
    pub(super) fn download(
        &mut self,
        from: Sender,
        conversation: u64,
        id: String,
        out: &mut Vec<Effect>,
    ) {
        let Some(c) = self
            .convs
            .get(&conversation)
            .filter(|c| c.tenant == from.who.tenant && !c.orphan)
        else {
            return refuse(out, &from, ErrorCode::NotFound, conversation);
        };
        if !may_read(c, &from) {
            return refuse(out, &from, ErrorCode::Forbidden, conversation);
        }
        let Some(f) = c.files.iter().find(|f| f.id == id) else {
            return refuse(out, &from, ErrorCode::NotFound, conversation);
        };
        out.push(Effect::Files(Job::Read(Box::new(Download {
            conn: from.conn,
            rid: from.rid,
            conversation,
            id,
            name: f.name.clone(),
            media_type: f.media_type.clone(),
        }))));
    }
}
