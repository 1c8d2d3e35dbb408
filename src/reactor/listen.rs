//! Listening sockets: one per reactor per listener, bound with `SO_REUSEPORT` so the
//! kernel spreads incoming connections over reactors with no hand-off between threads.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::ListenerConfig;

/// Binds `count` sockets to the same address. When the configured port is 0 the first
/// socket picks the port and the others join it.
pub(crate) fn bind_group(cfg: &ListenerConfig, count: usize) -> io::Result<Vec<TcpListener>> {
    let mut addr = cfg.addr;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let l = bind_one(addr, cfg.backlog)?;
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

fn bind_one(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}
