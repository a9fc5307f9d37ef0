//! Just enough HTTP/1.1 for both ends of the benchmark: one message read off a
//! keep-alive stream (content-length or chunked body), leftovers kept.

use std::io::{self, Read};

/// One HTTP/1.1 message head and body.
pub struct Message {
    /// The start line (`POST /mcp HTTP/1.1`, `HTTP/1.1 200 OK`).
    pub start: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        self.start.split(' ').nth(1)?.parse().ok()
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads more bytes into `buf`; `Ok(false)` on a clean end of stream.
fn fill(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// Reads until `buf` holds at least `n` bytes.
fn fill_to(stream: &mut impl Read, buf: &mut Vec<u8>, n: usize) -> io::Result<()> {
    while buf.len() < n {
        if !fill(stream, buf)? {
            return Err(bad("connection closed mid-message"));
        }
    }
    Ok(())
}

/// The next message on the stream; `None` if it closed between messages.
/// `buf` carries bytes read past the message to the next call.
pub fn read_message(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<Message>> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 256 * 1024 {
            return Err(bad("head too large"));
        }
        if !fill(stream, buf)? {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(bad("connection closed mid-head"));
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    buf.drain(..head_end + 4);
    let mut msg = Message {
        start,
        headers,
        body: Vec::new(),
    };
    if msg
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                fill_to(stream, buf, buf.len() + 1)?;
            };
            let size_text = std::str::from_utf8(&buf[..line_end]).map_err(|_| bad("chunk size"))?;
            let size_text = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("chunk size"))?;
            buf.drain(..line_end + 2);
            if size == 0 {
                // No trailers expected: the final CRLF.
                fill_to(stream, buf, 2)?;
                buf.drain(..2);
                break;
            }
            fill_to(stream, buf, size + 2)?;
            msg.body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
    } else {
        let len = match msg.header("content-length") {
            Some(v) => v.parse::<usize>().map_err(|_| bad("content-length"))?,
            None => 0,
        };
        fill_to(stream, buf, len)?;
        msg.body = buf.drain(..len).collect();
    }
    Ok(Some(msg))
}
