//! The upstream: a minimal HTTP/1.1 keep-alive server on loopback, one thread
//! per connection, answering every request 200 with a small JSON body, so
//! the proxy hop dominates what is measured.

use std::io::{BufWriter, Write};
use std::net::{TcpListener, TcpStream};

use crate::http::read_message;

/// The marker the load generator checks, so a local reply from Envoy can
/// never pass for an upstream answer.
pub const MARKER: &str = "\"custody_bench_upstream\":true";

fn response() -> Vec<u8> {
    let body = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"ok\"}}],{MARKER}}}}}"
    );
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let reply = response();
    let mut reader = stream.try_clone()?;
    let mut writer = BufWriter::new(stream);
    let mut buf = Vec::new();
    while let Some(req) = read_message(&mut reader, &mut buf)? {
        writer.write_all(&reply)?;
        writer.flush()?;
        if req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            break;
        }
    }
    Ok(())
}

pub fn run(port: u16) -> Result<(), String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| format!("bind 127.0.0.1:{port}: {e}"))?;
    eprintln!("custody-bench upstream on 127.0.0.1:{port}");
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                std::thread::spawn(move || {
                    let _ = serve(s);
                });
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
    Ok(())
}
