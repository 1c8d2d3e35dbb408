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

use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender as Tx};

use crate::handoff::{Command, ConnId};
use crate::protocol::ErrorCode;
use crate::protocol::messages::{self, Msg};
use crate::reactor::ReactorHandle;
use crate::service::{Sender, ShardMsg, error_command, shard_of};

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

/// A download the shard let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Download {
    /// The API connection.
    pub conn: ConnId,
    /// Its request id.
    pub rid: u32,
    /// The conversation.
    pub conversation: u64,
    /// The file's id (lower-case hex SHA-256).
    pub id: String,
    /// Its name, from the message that references it.
    pub name: String,
    /// Its media type, from the message that references it.
    pub media_type: String,
}

/// Work for the files thread.
#[derive(Debug, Clone)]
pub(crate) enum Job {
    /// Store the file, then route the message that references it as `from`'s `Send`.
    Store {
        /// The uploader (its connection and request id get the answer).
        from: Sender,
        /// The file.
        upload: Box<Upload>,
    },
    /// Read a file and answer the download with it.
    Read(Box<Download>),
}

/// A file answer for the reactor ([`Command::File`]).
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

/// What the files thread needs to answer.
pub(crate) struct FilesLinks {
    /// Every reactor (answers to connections).
    pub reactors: Arc<[ReactorHandle]>,
    /// Every shard's queue (the message referencing a stored file).
    pub shards: Arc<[Tx<ShardMsg>]>,
    /// `api.max_attachment_bytes` (a file read back is never larger).
    pub max_bytes: usize,
    /// What was stored.
    pub metrics: Arc<crate::metrics::FilesMetrics>,
}

/// Starts the files thread on `store` (its leftover temp files removed first); it
/// ends when every sender of `jobs` is gone.
pub(crate) fn spawn(
    store: store::Store,
    jobs: Receiver<Job>,
    links: FilesLinks,
) -> std::io::Result<JoinHandle<()>> {
    match store.clean_temp() {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            removed = n,
            root = %store.root().display(),
            "removed attachment temp files left by a crash"
        ),
        Err(e) => tracing::warn!(error = %e, "could not clean attachment temp files"),
    }
    std::thread::Builder::new()
        .name("files".into())
        .spawn(move || {
            for job in jobs {
                run(&store, job, &links);
            }
        })
}

fn answer(links: &FilesLinks, cmd: Command) {
    let Some(conn) = cmd.conn() else {
        return;
    };
    if let Some(r) = links.reactors.get(usize::from(conn.reactor))
        && r.send(cmd)
    {
        r.wake();
    }
}

fn run(store: &store::Store, job: Job, links: &FilesLinks) {
    match job {
        Job::Store { from, upload } => {
            let Upload {
                conversation,
                name,
                media_type,
                bytes,
                client_msg_id,
            } = *upload;
            let stored = match store.put(conversation, &bytes) {
                Ok(s) => {
                    let m = &links.metrics;
                    if s.dedup {
                        m.deduplicated.inc();
                    } else {
                        m.stored.inc();
                        m.bytes.add(bytes.len() as u64);
                    }
                    s
                }
                Err(e) => {
                    tracing::error!(error = %e, conversation, "storing an attachment failed");
                    let code = ErrorCode::StorageUnavailable;
                    return answer(
                        links,
                        error_command(from.conn, code, conversation, from.rid),
                    );
                }
            };
            tracing::debug!(conversation, id = %stored.id, dedup = stored.dedup, "attachment stored");
            let send = messages::Send {
                content_type: messages::content::ATTACHMENT,
                conversation,
                client_msg_id,
                group: String::new(),
                body: message_body(&stored.id, &name, bytes.len(), &media_type),
            };
            let (conn, rid) = (from.conn, from.rid);
            let msg = ShardMsg::Request {
                from,
                msg: Msg::from(send),
            };
            let shard = links.shards.get(shard_of(conversation, links.shards.len()));
            if shard.is_none_or(|q| q.send(msg).is_err()) {
                let code = ErrorCode::ShuttingDown;
                answer(links, error_command(conn, code, conversation, rid));
            }
        }
        Job::Read(d) => {
            let cmd = match store.get(d.conversation, &d.id, links.max_bytes) {
                Ok(body) => Command::File {
                    conn: d.conn,
                    rid: d.rid,
                    file: Box::new(FileAnswer {
                        media_type: d.media_type,
                        disposition: name::disposition(&d.name),
                        body: Bytes::from(body),
                    }),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    error_command(d.conn, ErrorCode::NotFound, d.conversation, d.rid)
                }
                Err(e) => {
                    tracing::error!(error = %e, conversation = d.conversation, "reading an attachment failed");
                    error_command(d.conn, ErrorCode::StorageUnavailable, d.conversation, d.rid)
                }
            };
            answer(links, cmd);
        }
    }
}
