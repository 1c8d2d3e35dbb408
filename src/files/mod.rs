//! Attachments: files uploaded over the HTTP API into a conversation, stored
//! content-addressed under `<state_dir>/files/<conversation>/<sha256>` ([`store`]) by
//! one dedicated thread (`spawn`), so that no reactor or worker ever blocks on the
//! disk. The journal holds only the message that references a file (content type
//! `ATTACHMENT`, body `{"id","name","size","type"}`); the files of a conversation go
//! when retention forgets it (the retention thread removes the directory: it does
//! blocking journal I/O already, and knows which conversations went).
//!
//! An upload reaches this thread only after the session worker checked the
//! credential and the conversation's shard checked that the uploader may write into
//! it; the file is stored first and then the message is routed to the shard as the
//! uploader's `Send`, so a message never references a file that is not on disk. If
//! that `Send` is refused after all (the conversation closed meanwhile, the journal
//! failed), the file stays unreferenced, invisible (a download needs a message that
//! references it), until retention removes the conversation's directory. A download
//! reaches this thread after the shard checked the reader and found the id among the
//! files its messages reference.

pub mod name;
pub mod store;

use bytes::Bytes;

/// An upload the shard let through, for the files thread to store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Upload {
    /// The conversation.
    pub conversation: u64,
    /// The file name (checked: [`name::check`]).
    pub name: String,
    /// The media type (one of `api.attachment_types`).
    pub media_type: String,
    /// The content (not empty, at most `api.max_attachment_bytes`).
    pub bytes: Bytes,
    /// The `client_msg_id` of the message that will reference it.
    pub client_msg_id: u64,
}

/// A file answer for the reactor (`crate::handoff::Command::File`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAnswer {
    /// The media type.
    pub media_type: String,
    /// `Content-Disposition` value.
    pub disposition: String,
    /// The content.
    pub body: Bytes,
}

/// The body of an `ATTACHMENT` message.
pub(crate) fn message_body(id: &str, name: &str, size: usize, media_type: &str) -> String {
    serde_json::json!({"id": id, "name": name, "size": size, "type": media_type}).to_string()
}
