//! The attachments' files thread: stores uploads and reads downloads
//! (`crate::files::store`), so that no reactor or worker ever blocks on the disk; see
//! `crate::files` for the order of checks.

use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender as Tx};

use crate::files::{FileAnswer, Upload, message_body, name, store};
use crate::handoff::Command;
use crate::protocol::ErrorCode;
use crate::protocol::messages::{self, Msg};
use crate::reactor::ReactorHandle;
use crate::service::Job;
use crate::service::{ShardMsg, error_command, shard_of};

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
