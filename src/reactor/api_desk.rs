//! The HTTP API's state in one reactor: request bodies still arriving and requests
//! waiting for the service's answer, by connection slot. Only connections in the
//! middle of an API request have an entry, so the API costs an idle connection
//! nothing (its context stays as small as a binary connection's).

use crate::api::route::Shape;
use crate::fasthash::ServerMap;
use crate::http::body::BodyReader;
use crate::http::head::Request;

/// A request whose body is still arriving.
#[derive(Debug)]
pub(crate) struct Reading {
    /// Its head.
    pub req: Request,
    /// The body so far.
    pub body: BodyReader,
}

/// A request handed to the workers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waiting {
    /// The request id its answer carries.
    pub rid: u32,
    /// `HEAD`: the answer's headers only.
    pub head_only: bool,
    /// The client keeps the connection for another request.
    pub keep_alive: bool,
    /// How the reply becomes the answer.
    pub shape: Shape,
}

/// A transcript export being gathered, page by page, newest page first.
#[derive(Debug)]
pub(crate) struct Export {
    /// The credential, presented again with each page's request.
    pub authorization: Option<String>,
    /// The conversation.
    pub conversation: u64,
    /// JSON Lines of each page received, oldest entry first within a page.
    pub pages: Vec<Vec<u8>>,
    /// Bytes of `pages`.
    pub bytes: usize,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct ApiDesk {
    /// Bodies still arriving.
    pub reading: ServerMap<usize, Box<Reading>>,
    /// Requests waiting for their answer.
    pub waiting: ServerMap<usize, Waiting>,
    /// Exports being gathered (their connections also wait).
    pub exports: ServerMap<usize, Box<Export>>,
    /// Connections with an upload reading its body or waiting for its answer (at
    /// most `api.max_uploads_in_flight`: each may hold `api.max_attachment_bytes`).
    pub uploads: ServerMap<usize, ()>,
    /// Kept connections with pipelined input to handle after their answer.
    pub resume: Vec<usize>,
    /// The allowed `Origin` of an attachment request in flight, which its answer
    /// names in `Access-Control-Allow-Origin` (the visitor widget's cross-origin calls).
    pub cors: ServerMap<usize, String>,
    /// The last request id given out (never 0: unsolicited frames carry 0).
    last_rid: u32,
}

impl ApiDesk {
    /// A request id for the next request.
    pub fn next_rid(&mut self) -> u32 {
        self.last_rid = self.last_rid.wrapping_add(1).max(1);
        self.last_rid
    }

    /// The request waiting in `slot`, taken out, when its id is `rid` (an answer
    /// for any other id is stale and leaves it waiting).
    pub fn take_waiting(&mut self, slot: usize, rid: u32) -> Option<Waiting> {
        let w = self.waiting.get(&slot).copied().filter(|w| w.rid == rid)?;
        self.waiting.remove(&slot);
        Some(w)
    }

    /// The connection in `slot` is gone: forget its request.
    pub fn forget(&mut self, slot: usize) {
        self.reading.remove(&slot);
        self.waiting.remove(&slot);
        self.exports.remove(&slot);
        self.uploads.remove(&slot);
        self.cors.remove(&slot);
    }

    /// Requests in flight (reading or waiting).
    pub fn in_flight(&self) -> usize {
        self.reading.len().saturating_add(self.waiting.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_answer_with_its_request_id_takes_a_waiting_request() {
        let mut d = ApiDesk::default();
        let w = Waiting {
            rid: 7,
            head_only: false,
            keep_alive: true,
            shape: Shape::Fields,
        };
        d.waiting.insert(3, w);
        assert!(d.take_waiting(3, 6).is_none(), "a stale answer");
        assert!(d.take_waiting(4, 7).is_none(), "another connection");
        assert_eq!(d.take_waiting(3, 7).map(|w| w.rid), Some(7));
        assert!(d.waiting.is_empty());
    }

    #[test]
    fn request_ids_are_never_zero() {
        let mut d = ApiDesk {
            last_rid: u32::MAX - 1,
            ..Default::default()
        };
        assert_eq!(d.next_rid(), u32::MAX);
        assert_eq!(d.next_rid(), 1);
        assert_eq!(d.next_rid(), 2);
    }
}
