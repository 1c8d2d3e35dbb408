//! An echo server written the way most Rust engineers would write one: a tokio
//! multi-threaded runtime, one task per connection, the stream split into its read and
//! write halves and `tokio::io::copy` from one to the other.
//!
//! It is the comparison peer for `benches/compare.sh`, which runs it and the
//! switchboard daemon's echo listener under the same `storm` scenarios.
//!
//! ```text
//! tokio-echo [--addr IP] [--port PORT] [--backlog N]
//! ```
//!
//! Defaults: `--addr 127.0.0.1 --port 7703 --backlog 4096`. Two deliberate departures
//! from the most minimal version, so the comparison measures the server and not socket
//! options: the listen backlog is 4096 (switchboard's default; `TcpListener::bind`
//! would use 1024) and accepted sockets get `TCP_NODELAY`, as switchboard's do.
//!
//! At start the soft `RLIMIT_NOFILE` is raised to the hard limit (through the `rlimit`
//! crate, no `unsafe` here), so the server can hold as many connections as the machine
//! allows. Stop it with SIGTERM or Ctrl-C.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use tokio::net::{TcpSocket, TcpStream};

struct Args {
    addr: IpAddr,
    port: u16,
    backlog: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut out = Args {
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 7703,
        backlog: 4096,
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
            "--help" | "-h" => {
                println!("usage: tokio-echo [--addr IP] [--port PORT] [--backlog N]");
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
            eprintln!("tokio-echo: {e}");
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
    eprintln!("tokio-echo listening addr={local} nofile={nofile}");

    let accept = async {
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    tokio::spawn(echo(stream));
                }
                // Out of descriptors and the like: keep serving the connections we have.
                Err(e) => {
                    eprintln!("tokio-echo: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    };
    tokio::select! {
        () = accept => Ok(()),
        r = shutdown_signal() => {
            eprintln!("tokio-echo stopping");
            r
        }
    }
}

/// One connection: copy everything read back to the writer until EOF or an error.
async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.split();
    let _ = tokio::io::copy(&mut reader, &mut writer).await;
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
