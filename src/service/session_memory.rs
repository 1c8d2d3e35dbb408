//! Where an established session's heap bytes go: a session worker and the router,
//! driven in-process through the real handshake (`Hello` with a verified token →
//! `Welcome`, `RouterMsg::Connected`), with the caller's allocator counting.
//! Measurement only (`cargo bench --bench session_memory`); nothing calls it in the
//! daemon.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::router::{Router, RouterSettings};
use super::session::{SessionSettings, Sessions};
use super::{Effect, RouterMsg};
use crate::auth::{Claims, Verifier};
use crate::clock::{Mono, UnixMs};
use crate::config::{AuthKey, Config};
use crate::frame::FrameHeader;
use crate::handoff::{ConnId, Event};
use crate::metrics::WorkerMetrics;
use crate::protocol::{Msg, PROTOCOL_VERSION, messages};

/// What `n` established visitor sessions hold, in heap bytes asked of the allocator
/// (before its size-class rounding).
#[derive(Debug, Clone, Default)]
pub struct SessionMemory {
    /// Sessions established.
    pub sessions: usize,
    /// The session worker (`Sessions`: its map entry, the deadline, the principal).
    pub worker: i64,
    /// The router (directory, user record, group watcher entry).
    pub router: i64,
    /// Named parts, computed from capacities and sizes, for the table.
    pub parts: Vec<(String, i64)>,
}

/// Establishes `n` visitor sessions (user ids `storm-0-<i>`, no tenant, no groups,
/// as `storm --scenario idle` logs in) on one session worker and the router, reading
/// the live heap with `live` (bytes) between the steps.
pub fn measure(n: usize, live: &dyn Fn() -> i64) -> SessionMemory {
    const SECRET: &str = "session-memory-probe-secret-0123456789";
    let mut config = Config::default();
    config.auth.keys = vec![AuthKey {
        kid: "k".into(),
        secret: Some(SECRET.into()),
        secret_file: None,
    }];
    let Ok(verifier) = Verifier::from_config(&config) else {
        return SessionMemory::default();
    };
    let settings = SessionSettings {
        verifier,
        heartbeat_ms: 15_000,
        idle_timeout_ms: 45_000,
        max_frame: 1 << 20,
        shards: 2,
        max_replay: 1000,
        max_record: None,
        api_keys: Default::default(),
        visitor_address: Default::default(),
    };
    let shared = Arc::new(std::sync::RwLock::new(Arc::new(settings)));
    let mut sessions = Sessions::new(0, shared);
    let mut router = Router::new(RouterSettings::from_config(&config));
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let stats = WorkerMetrics::default();
    let now = SystemTime::now();
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    let mut msgs: Vec<RouterMsg> = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(16);

    let l0 = live();
    for i in 0..n {
        let conn = ConnId {
            reactor: (i % 2) as u16,
            slot: (i / 2) as u32,
            generation: 1,
        };
        // Tokens issued over time, as storm's are: `exp` differs per second.
        let iat = now + Duration::from_millis(i as u64);
        let claims = Claims::new(
            format!("storm-0-{i}"),
            "visitor",
            iat,
            Duration::from_secs(3600),
        );
        let Ok(token) = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &key,
        ) else {
            continue;
        };
        let hello = Msg::from(messages::Hello {
            protocol: PROTOCOL_VERSION,
            token,
            client: "storm".into(),
            resume: Vec::new(),
        });
        let at = UnixMs(now_ms.saturating_add(i as u64));
        sessions.handle(Event::Opened { conn, peer }, at, &mut out, &stats);
        let event = Event::Frame {
            conn,
            header: FrameHeader::new(hello.kind().as_u8(), 0, 1),
            payload: Bytes::copy_from_slice(&hello.to_payload()),
        };
        sessions.handle(event, at, &mut out, &stats);
        for effect in out.drain(..) {
            if let Effect::Router(msg) = effect {
                msgs.push(msg);
            }
        }
    }
    let mut rout = Vec::new();
    for (i, msg) in msgs.drain(..).enumerate() {
        router.handle(msg, Mono::from_ms(i as u64), &mut rout);
        rout.clear();
    }
    drop(rout);
    let l2 = live();
    let mut parts = sessions.dismantle(live);
    let worker = parts.iter().map(|p| p.1).sum::<i64>();
    let router_bytes = l2 - l0 - worker;
    parts.extend(router.dismantle(live));
    SessionMemory {
        sessions: n,
        worker,
        router: router_bytes,
        parts,
    }
}

/// Heap bytes of a hashbrown table of `T` with `capacity` (as `HashMap::capacity`
/// reports it): the buckets, then a control byte per bucket plus one group.
pub(crate) fn table_bytes<T>(capacity: usize) -> i64 {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        capacity + 1
    } else {
        capacity / 7 * 8
    };
    let data = (buckets * std::mem::size_of::<T>()).next_multiple_of(16);
    i64::try_from(data + buckets + 16).unwrap_or(i64::MAX)
}

/// Drops `value`, returning the heap bytes that freed (`live` before minus after).
pub(crate) fn freed<T>(value: T, live: &dyn Fn() -> i64) -> i64 {
    let before = live();
    drop(value);
    before - live()
}
