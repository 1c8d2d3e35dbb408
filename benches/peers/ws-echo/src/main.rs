//! A WebSocket echo server written the way most Rust engineers would write one: a tokio
//! multi-threaded runtime, one task per connection, `tokio_tungstenite::accept_async`
//! and the stream's data messages forwarded back to its sink (the echo-server example
//! of tokio-tungstenite). Pings are answered and Close is echoed by tungstenite itself.
//!
//! It is the WebSocket comparison peer for `benches/compare.sh`, which runs it and the
//! switchboard daemon's echo listener (`[listeners.echo] websocket = true`) under the
//! same `storm --transport ws-bin` scenarios.
//!
//! ```text
//! ws-echo [--addr IP] [--port PORT] [--backlog N] [--read-buffer BYTES]
//! ```
//!
//! Defaults: `--addr 127.0.0.1 --port 7704 --backlog 4096`, tungstenite's default read
//! buffer (128 KiB, allocated per connection). `--read-buffer 4096` is the usual tuning
//! for many idle connections. As with tokio-echo, the listen backlog is 4096 and
//! accepted sockets get `TCP_NODELAY`, as switchboard's do, so the comparison measures
//! the server and not socket options.
//!
//! At start the soft `RLIMIT_NOFILE` is raised to the hard limit (the `rlimit` crate).
//! Stop it with SIGTERM or Ctrl-C.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use futures_util::{StreamExt, TryStreamExt, future};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

struct Args {
    addr: IpAddr,
    port: u16,
    backlog: u32,
    read_buffer: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut out = Args {
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 7704,
        backlog: 4096,
        read_buffer: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{key} needs a value"))
        };
        match key.as_str() {
            "--addr" => {
                let v = value()?;
                out.addr = v.parse().map_err(|e| format!("--addr {v}: {e}"))?;
            }
            "--port" | "-port" => {
                let v = value()?;
                out.port = v.parse().map_err(|e| format!("--port {v}: {e}"))?;
            }
            "--backlog" => {
                let v = value()?;
                out.backlog = v.parse().map_err(|e| format!("--backlog {v}: {e}"))?;
            }
            "--read-buffer" => {
                let v = value()?;
                let n: usize = v.parse().map_err(|e| format!("--read-buffer {v}: {e}"))?;
                if n == 0 {
                    return Err("--read-buffer must be at least 1".into());
                }
                out.read_buffer = Some(n);
            }
            "--help" | "-h" => {
                println!(
                    "usage: ws-echo [--addr IP] [--port PORT] [--backlog N] [--read-buffer BYTES]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws-echo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args = parse_args()?;
    let nofile = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n.to_string(),
        Err(e) => format!("unchanged ({e})"),
    };
    let mut config = WebSocketConfig::default();
    if let Some(n) = args.read_buffer {
        config = config.read_buffer_size(n);
    }

    let addr = SocketAddr::new(args.addr, args.port);
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    socket
        .set_reuseaddr(true)
        .map_err(|e| format!("SO_REUSEADDR: {e}"))?;
    socket.bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    let listener = socket
        .listen(args.backlog)
        .map_err(|e| format!("listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("{e}"))?;
    eprintln!(
        "ws-echo listening addr={local} nofile={nofile} read_buffer={}",
        config.read_buffer_size
    );

    let accept = async {
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    tokio::spawn(echo(stream, config));
                }
                // Out of descriptors and the like: keep serving the connections we have.
                Err(e) => {
                    eprintln!("ws-echo: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    };
    tokio::select! {
        () = accept => Ok(()),
        r = shutdown_signal() => {
            eprintln!("ws-echo stopping");
            r
        }
    }
}

/// One connection: the upgrade, then every text or binary message back to the sender
/// until Close, EOF or an error.
async fn echo(stream: TcpStream, config: WebSocketConfig) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|m| future::ready(m.is_text() || m.is_binary()))
        .forward(write)
        .await;
}

async fn shutdown_signal() -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM: {e}"))?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r.map_err(|e| format!("SIGINT: {e}"))?,
    }
    Ok(())
}
