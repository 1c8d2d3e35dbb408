//! A keep-alive HTTP/1.1 client for the HTTP API tests. Every exchange is recorded,
//! and [`Recorder::validate`] checks each recorded response against
//! `proto-spec/openapi.yaml` with a real OpenAPI validator (Python
//! `openapi-schema-validator`, through `tests/api/validate.py`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use switchboard::api::Scope;
use switchboard::api::keys::{hash_hex, new_key};
use switchboard::config::ApiKeyConfig;

use super::TestServer;
use super::peer::{Peer, service_server};

/// Longest a request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Header lines, `name: value`, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The name of a JSON error answer's code (`""` when it is not one).
    pub fn error_name(&self) -> String {
        self.json()["error"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The protocol error code of a JSON error answer.
    pub fn code(&self) -> u64 {
        self.json()["error"]["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("not an error: {}", self.json()))
    }
}

/// Exchanges recorded for validation: (method, path, reply).
#[derive(Debug, Default, Clone)]
pub struct Recorder(Arc<Mutex<Vec<(String, String, Reply)>>>);

impl Recorder {
    fn push(&self, method: &str, target: &str, reply: &Reply) {
        let path = target.split('?').next().unwrap_or(target).to_owned();
        self.0
            .lock()
            .unwrap()
            .push((method.to_owned(), path, reply.clone()));
    }

    /// Validates every recorded response against `proto-spec/openapi.yaml`. Without
    /// Python and its validator the check is skipped with a note, unless
    /// `SWITCHBOARD_REQUIRE_OPENAPI` is set (`.ci/run` sets it).
    pub fn validate(&self) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let records: Vec<Value> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(method, path, r)| {
                serde_json::json!({
                    "method": method,
                    "path": path,
                    "status": r.status,
                    "content_type": r.header("content-type"),
                    "body": String::from_utf8_lossy(&r.body),
                })
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("records.jsonl");
        let text: String = records.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(&file, text).unwrap();
        let python = std::env::var("SWITCHBOARD_PYTHON").unwrap_or_else(|_| "python3".into());
        let out = std::process::Command::new(&python)
            .arg(root.join("tests/api/validate.py"))
            .arg(root.join("proto-spec/openapi.yaml"))
            .arg(&file)
            .output();
        let required = std::env::var_os("SWITCHBOARD_REQUIRE_OPENAPI").is_some();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) if o.status.code() == Some(3) && !required => {
                eprintln!(
                    "OpenAPI validation skipped: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            Ok(o) => panic!(
                "responses do not match proto-spec/openapi.yaml:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) if !required => eprintln!("OpenAPI validation skipped: no {python}: {e}"),
            Err(e) => panic!("running {python}: {e}"),
        }
    }
}

/// One kept-alive connection to the client port.
pub struct ApiClient {
    stream: TcpStream,
    buf: Vec<u8>,
    auth: Option<String>,
    recorder: Recorder,
}

impl ApiClient {
    /// Connects; requests carry `Authorization: Bearer <credential>` when given.
    pub fn connect(addr: SocketAddr, credential: Option<&str>, recorder: &Recorder) -> Self {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        Self {
            stream,
            buf: Vec::new(),
            auth: credential.map(|c| format!("Bearer {c}")),
            recorder: recorder.clone(),
        }
    }

    /// The request text of `method target` with `extra` header lines and `body`
    /// (JSON, with its `Content-Length`).
    pub fn request_text(
        &self,
        method: &str,
        target: &str,
        extra: &str,
        body: Option<&str>,
    ) -> String {
        let auth = self
            .auth
            .as_ref()
            .map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        let body_headers = body.map_or(String::new(), |b| {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            )
        });
        format!(
            "{method} {target} HTTP/1.1\r\nHost: api.test\r\n{auth}{body_headers}{extra}\r\n{}",
            body.unwrap_or_default()
        )
    }

    /// A request and its reply.
    pub fn call(&mut self, method: &str, target: &str, body: Option<&str>) -> Reply {
        self.call_with(method, target, "", body)
    }

    /// [`ApiClient::call`] with extra header lines (each ending in CRLF).
    pub fn call_with(
        &mut self,
        method: &str,
        target: &str,
        extra: &str,
        body: Option<&str>,
    ) -> Reply {
        let text = self.request_text(method, target, extra, body);
        self.send_raw(text.as_bytes());
        self.read_reply(method, target)
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one reply (to a request of `method` on `target`, for the record).
    pub fn read_reply(&mut self, method: &str, target: &str) -> Reply {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill();
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line: {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let body_len = if method == "HEAD" || status == 204 {
            0
        } else {
            len
        };
        while self.buf.len() < head_end + body_len {
            self.fill();
        }
        let body = self.buf[head_end..head_end + body_len].to_vec();
        self.buf.drain(..head_end + body_len);
        let reply = Reply {
            status,
            headers,
            body,
        };
        self.recorder.push(method, target, &reply);
        reply
    }

    /// Whether the server closed the connection (reads to EOF).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 256];
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    fn fill(&mut self) {
        let mut b = [0u8; 16 * 1024];
        // A signal to the test process (another test's server) may interrupt a read.
        let n = loop {
            match self.stream.read(&mut b) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r.unwrap(),
            }
        };
        assert!(
            n > 0,
            "connection closed; got {} bytes: {:?}",
            self.buf.len(),
            String::from_utf8_lossy(&self.buf[..self.buf.len().min(300)])
        );
        self.buf.extend_from_slice(&b[..n]);
    }
}

/// An API key entry and its credential (the secret derived from the id, so a test
/// run is repeatable).
pub fn key(id: &str, tenant: &str, scopes: &[Scope]) -> (ApiKeyConfig, String) {
    let (credential, _) = new_key(id, &[id.len() as u8; 32]);
    let secret = credential.rsplit_once('_').unwrap().1.to_owned();
    let entry = ApiKeyConfig {
        id: id.into(),
        tenant: tenant.into(),
        secret_sha256: hash_hex(&secret),
        scopes: scopes.to_vec(),
    };
    (entry, credential)
}

/// A server with three API keys and a recorder for the exchanges.
pub struct ApiSetup {
    /// The server.
    pub server: TestServer,
    /// `crm`: conversations:read only.
    pub reader: String,
    /// `ops`: every scope.
    pub admin: String,
    /// `far`: every scope, tenant `elsewhere`.
    pub other_tenant: String,
    /// Every exchange of every client, for [`Recorder::validate`].
    pub recorder: Recorder,
}

impl ApiSetup {
    /// On the service test configuration.
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    /// On the service test configuration, adjusted by `tweak`.
    pub fn with(tweak: impl FnOnce(&mut switchboard::Config)) -> Self {
        let (k1, reader) = key("crm", "", &[Scope::ConversationsRead]);
        let (k2, admin) = key("ops", "", &[Scope::Admin]);
        let (k3, other_tenant) = key("far", "elsewhere", &[Scope::Admin]);
        let server = service_server(|c| {
            c.api.keys = vec![k1, k2, k3];
            tweak(c);
        });
        Self {
            server,
            reader,
            admin,
            other_tenant,
            recorder: Recorder::default(),
        }
    }

    /// A kept-alive client presenting `credential`.
    pub fn client(&self, credential: Option<&str>) -> ApiClient {
        ApiClient::connect(self.server.addr(), credential, &self.recorder)
    }

    /// A client presenting `credential` (a key or a token).
    pub fn client_as(&self, credential: &str) -> ApiClient {
        self.client(Some(credential))
    }

    /// Visitor `vera` opens a conversation with `first`, agent `sue` (support) is
    /// given it: (vera, sue, conversation).
    pub fn served_conversation(&self, first: &str) -> (Peer, Peer, u64) {
        let addr = self.server.addr();
        let mut sue = Peer::connect(addr, &super::agent_token("sue", &["support"]), "sue");
        let mut vera = Peer::connect(addr, &super::token("vera", "visitor"), "vera");
        let id = vera.send_accepted(0, 1, first).conversation;
        sue.assigned(id);
        vera.assigned(id);
        (vera, sue, id)
    }
}
