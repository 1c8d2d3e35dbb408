//! Listening sockets: one per reactor per listener, bound with `SO_REUSEPORT` so the
//! kernel spreads incoming connections over reactors with no hand-off between threads.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::ListenerConfig;

/// Binds `count` sockets to the same address. When the configured port is 0 the first
/// socket picks the port and the others join it.
pub(crate) fn bind_group(cfg: &ListenerConfig, count: usize) -> io::Result<Vec<TcpListener>> {
    if cfg.addr.port() != 0 {
        refuse_if_taken(cfg.addr)?;
    }
    let mut addr = cfg.addr;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let l = bind_one(addr, cfg.backlog)?;
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// `SO_REUSEPORT` would let us silently share a port with another running daemon
/// (the kernel would split connections between the two): bind once without it, which
/// fails while anyone listens there.
fn refuse_if_taken(addr: SocketAddr) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                "address in use (is another switchboard running?)",
            )
        } else {
            e
        }
    })
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
