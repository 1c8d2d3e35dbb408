//! Dispatch: client requests refused at a full service queue, facts never.

use std::sync::Arc;

use super::*;
use crate::protocol::messages::{self, Msg};
use crate::protocol::{ErrorCode, Kind};
use crate::service::Sender as From;

/// One reactor (its commands in the returned receiver), one shard, the router.
struct Rig {
    dispatch: Dispatch,
    commands: crate::queue::Receiver<Command>,
    shard: Receiver<ShardMsg>,
    router: Receiver<RouterMsg>,
    stats: Arc<CachePadded<WorkerMetrics>>,
    _poll: mio::Poll,
}

fn rig(depth: usize) -> Rig {
    let (cmd_tx, commands) = crate::queue::bounded(1 << 20);
    let (reactor, poll) = ReactorHandle::for_test(cmd_tx).unwrap();
    let (shard_tx, shard) = crossbeam_channel::unbounded();
    let (router_tx, router) = crossbeam_channel::unbounded();
    let links = Links {
        reactors: vec![reactor].into(),
        shards: vec![shard_tx].into(),
        controls: Vec::new().into(),
        sessions: Vec::new().into(),
        router: Some(router_tx),
        service_queue_depth: depth,
        files: None,
    };
    let stats = Arc::new(CachePadded::new(WorkerMetrics::default()));
    Rig {
        dispatch: Dispatch::new(links, Some(stats.clone())),
        commands,
        shard,
        router,
        stats,
        _poll: poll,
    }
}

fn sender(slot: u32, rid: u32) -> From {
    let conn = ConnId {
        reactor: 0,
        slot,
        generation: 1,
    };
    From::test(&format!("u{slot}"), messages::role::VISITOR, conn, rid)
}

fn typing(slot: u32, rid: u32) -> Effect {
    Effect::Shard(ShardMsg::Request {
        from: sender(slot, rid),
        msg: Msg::from(messages::Typing {
            typing: true,
            conversation: 7,
            user: String::new(),
        }),
    })
}

#[test]
fn a_request_to_a_full_shard_queue_closes_its_connection_with_500() {
    let mut r = rig(2);
    let mut effects = vec![typing(1, 10), typing(2, 11), typing(3, 12)];
    r.dispatch.run(&mut effects, crate::clock::Mono::ZERO);
    // Two fit; the third finds the queue at its bound.
    assert_eq!(r.shard.len(), 2);
    assert_eq!(r.stats.shard_queue_refused.get(), 1);
    match r.commands.try_recv().unwrap() {
        Command::Close {
            conn,
            code,
            farewell: Some(frame),
        } => {
            assert_eq!(conn.slot, 3);
            assert_eq!(code, Some(ErrorCode::ServerBusy));
            let raw: [u8; crate::frame::HEADER_LEN] =
                frame[..crate::frame::HEADER_LEN].try_into().unwrap();
            let header = crate::frame::FrameHeader::parse(&raw, 0).unwrap();
            assert_eq!(header.kind, Kind::Error.as_u8());
            assert_eq!(header.status, ErrorCode::ServerBusy.as_u16());
            assert_eq!(header.request_id, 12);
        }
        other => panic!("expected a close, got {other:?}"),
    }
    // Once the shard has taken one, the next request fits again.
    r.shard.try_recv().unwrap();
    r.dispatch
        .run(&mut vec![typing(4, 13)], crate::clock::Mono::ZERO);
    assert_eq!(r.shard.len(), 2);
    assert!(r.commands.try_recv().is_err());
}

#[test]
fn facts_go_through_a_full_queue() {
    let mut r = rig(1);
    let mut effects = vec![
        Effect::Router(RouterMsg::Disconnected {
            conn: sender(1, 0).conn,
        }),
        Effect::Router(RouterMsg::Claim {
            from: sender(2, 20),
            conversation: 7,
        }),
        Effect::Router(RouterMsg::Disconnected {
            conn: sender(3, 0).conn,
        }),
    ];
    r.dispatch.run(&mut effects, crate::clock::Mono::ZERO);
    // The claim (a request) was refused; both disconnects (facts) are queued.
    assert_eq!(r.router.len(), 2);
    assert_eq!(r.stats.router_queue_refused.get(), 1);
    assert!(matches!(
        r.commands.try_recv().unwrap(),
        Command::Close { conn, .. } if conn.slot == 2
    ));
}
