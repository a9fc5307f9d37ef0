//! A `text/event-stream` split into events as the WHATWG HTML standard's
//! event-stream parser reads it (§9.2.6): lines end with CRLF, LF or CR; a
//! blank line ends an event; `:` starts a comment; `field: value` (one
//! leading space of the value dropped); `data` lines joined with LF; one
//! leading U+FEFF dropped. Events are handed out with their exact bytes, so
//! an event that is not rewritten passes byte for byte.
//!
//! Streaming: bytes arrive in chunks of any size; a CR at the end of a chunk
//! waits for the next byte (it may be half of a CRLF). The event being read
//! is held, and refused once it passes `max_event` bytes.

/// One complete event: its bytes (through the blank line that ends it) and
/// the lines a client would parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub raw: Vec<u8>,
    /// The text of each line, without its terminator (and without the BOM).
    pub lines: Vec<Vec<u8>>,
}

impl Event {
    /// The data buffer a client dispatches: `data` values joined with LF;
    /// `None` when it is empty (a client dispatches nothing then).
    pub fn data(&self) -> Option<Vec<u8>> {
        let mut data = Vec::new();
        for line in &self.lines {
            if let Some(value) = field_value(line, b"data") {
                data.extend_from_slice(value);
                data.push(b'\n');
            }
        }
        data.pop()?;
        Some(data)
    }

    /// The event with its data replaced by `data` (other lines kept in
    /// order, data lines at the place of the first one), LF line endings.
    pub fn with_data(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        if self.raw.starts_with(BOM) {
            out.extend_from_slice(BOM);
        }
        let mut written = false;
        for line in &self.lines {
            if field_value(line, b"data").is_none() {
                out.extend_from_slice(line);
                out.push(b'\n');
            } else if !written {
                written = true;
                push_data_lines(&mut out, data);
            }
        }
        out.push(b'\n');
        out
    }
}

/// An event carrying only `data`, e.g. a JSON-RPC error put in a stream.
pub fn data_event(data: &[u8]) -> Vec<u8> {
    let mut out = b"event: message\n".to_vec();
    push_data_lines(&mut out, data);
    out.push(b'\n');
    out
}

/// `data` as `data:` lines, one per line of it (a data field holds no newline).
fn push_data_lines(out: &mut Vec<u8>, data: &[u8]) {
    for part in data.split(|&b| b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(part);
        out.push(b'\n');
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The value of `line` if it sets `field` (`field:value`, `field: value`,
/// or `field` alone for an empty value); `None` for other fields and comments.
fn field_value<'l>(line: &'l [u8], field: &[u8]) -> Option<&'l [u8]> {
    let rest = line.strip_prefix(field)?;
    match rest.first() {
        None => Some(rest),
        Some(b':') => Some(rest[1..].strip_prefix(b" ").unwrap_or(&rest[1..])),
        Some(_) => None, // another field: `dataX`
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTooLarge;

/// The streaming splitter.
#[derive(Debug, Default)]
pub struct Splitter {
    /// Bytes not yet handed out in an event (from `event_start` on: the
    /// event being read).
    pending: Vec<u8>,
    event_start: usize,
    /// Where the current line starts in `pending`, and how far it was scanned.
    line_start: usize,
    scanned: usize,
    lines: Vec<Vec<u8>>,
    /// Whether the stream's first bytes were looked at for a BOM.
    started: bool,
}

impl Splitter {
    /// Feeds `chunk`; returns the events it completed. `end`: no more bytes
    /// follow (a trailing CR then ends its line). Bytes of an event that
    /// never ends are kept: see [`Splitter::unfinished`].
    pub fn push(
        &mut self,
        chunk: &[u8],
        end: bool,
        max_event: usize,
    ) -> Result<Vec<Event>, EventTooLarge> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        loop {
            if !self.started {
                if self.pending.len() < BOM.len() && !end && BOM.starts_with(&self.pending) {
                    break; // maybe a BOM split across chunks
                }
                self.started = true;
                if self.pending.starts_with(BOM) {
                    self.line_start = BOM.len();
                    self.scanned = BOM.len();
                }
            }
            let Some(at) = self.pending[self.scanned..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .map(|i| self.scanned + i)
            else {
                self.scanned = self.pending.len();
                break;
            };
            let terminator = match (self.pending[at], self.pending.get(at + 1)) {
                (b'\r', Some(b'\n')) => 2,
                (b'\r', None) if !end => {
                    self.scanned = at; // wait: half of a CRLF?
                    break;
                }
                _ => 1,
            };
            let line = self.pending[self.line_start..at].to_vec();
            let next = at + terminator;
            if line.is_empty() {
                events.push(Event {
                    raw: self.pending[self.event_start..next].to_vec(),
                    lines: std::mem::take(&mut self.lines),
                });
                self.event_start = next;
                self.line_start = next;
                self.scanned = next;
            } else {
                self.lines.push(line);
                self.line_start = next;
                self.scanned = next;
            }
        }
        // Forget what was handed out, once per chunk (not once per event).
        let done = self.event_start;
        self.pending.drain(..done);
        self.event_start = 0;
        self.line_start -= done;
        self.scanned -= done;
        if self.pending.len() > max_event {
            return Err(EventTooLarge);
        }
        Ok(events)
    }

    /// Bytes of an event not ended by a blank line (a client never
    /// dispatches it).
    pub fn unfinished(&self) -> &[u8] {
        &self.pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn split_all(stream: &[u8], chunk: usize) -> (Vec<Event>, Vec<u8>) {
        let mut s = Splitter::default();
        let mut events = Vec::new();
        let chunks: Vec<&[u8]> = stream.chunks(chunk.max(1)).collect();
        for (i, c) in chunks.iter().enumerate() {
            events.extend(s.push(c, i + 1 == chunks.len(), 1 << 20).unwrap());
        }
        if stream.is_empty() {
            events.extend(s.push(b"", true, 1 << 20).unwrap());
        }
        (events, s.unfinished().to_vec())
    }

    #[test]
    fn every_line_ending_and_chunking_gives_the_same_events() {
        let lf = b"event: message\nid: 1\ndata: {\"a\":\ndata:  1}\n\n: comment\n\ndata\n\n";
        let crlf = String::from_utf8_lossy(lf).replace('\n', "\r\n");
        let cr = String::from_utf8_lossy(lf).replace('\n', "\r");
        for stream in [lf.to_vec(), crlf.into_bytes(), cr.into_bytes()] {
            for chunk in [1, 2, 3, 7, 1000] {
                let (events, rest) = split_all(&stream, chunk);
                assert_eq!(events.len(), 3, "{chunk}");
                assert!(rest.is_empty());
                assert_eq!(events[0].data().unwrap(), b"{\"a\":\n 1}");
                assert_eq!(events[1].data(), None); // only a comment
                assert_eq!(events[2].data().unwrap(), b""); // `data` alone: one empty line
                let joined: Vec<u8> = events.iter().flat_map(|e| e.raw.clone()).collect();
                assert_eq!(joined, stream, "events carry their exact bytes");
            }
        }
    }

    #[test]
    fn fields_are_matched_exactly_and_one_space_is_dropped() {
        let (events, _) = split_all(
            b"Data: no\ndatax: no\ndata:  two spaces\ndata:none\n:data: comment\n\n",
            5,
        );
        assert_eq!(events[0].data().unwrap(), b" two spaces\nnone");
    }

    #[test]
    fn a_bom_is_dropped_once_and_kept_in_the_bytes() {
        let stream = b"\xEF\xBB\xBFdata: x\n\n\xEF\xBB\xBFdata: y\n\n";
        for chunk in [1, 2, 100] {
            let (events, _) = split_all(stream, chunk);
            assert_eq!(events[0].data().unwrap(), b"x");
            assert!(events[0].raw.starts_with(BOM));
            // Only the stream's first BOM is dropped: the second is part of a field name.
            assert_eq!(events[1].data(), None);
        }
    }

    #[test]
    fn an_unfinished_event_is_not_handed_out() {
        let (events, rest) = split_all(b"data: 1\n\ndata: 2\n", 4);
        assert_eq!(events.len(), 1);
        assert_eq!(rest, b"data: 2\n");
        let (events, rest) = split_all(b"data: 1\r", 1);
        assert!(events.is_empty());
        assert_eq!(rest, b"data: 1\r");
    }

    #[test]
    fn a_held_event_over_the_cap_is_refused() {
        let mut s = Splitter::default();
        assert!(s.push(&[b'a'; 100], false, 100).is_ok());
        assert_eq!(s.push(b"a", false, 100), Err(EventTooLarge));
        // Completed events are handed out and not held: many small events pass.
        let mut s = Splitter::default();
        for _ in 0..1000 {
            assert_eq!(s.push(b"data: 0123456789\n\n", false, 64).unwrap().len(), 1);
        }
    }

    #[test]
    fn rewriting_keeps_the_other_fields_and_splits_data_on_newlines() {
        let (events, _) = split_all(
            b"id: 7\r\nevent: message\r\ndata: a\r\nretry: 10\r\ndata: b\r\n\r\n",
            3,
        );
        let out = events[0].with_data(b"x\ny");
        assert_eq!(
            out,
            b"id: 7\nevent: message\ndata: x\ndata: y\nretry: 10\n\n"
        );
        let (again, _) = split_all(&out, 2);
        assert_eq!(again[0].data().unwrap(), b"x\ny");
        let (err, _) = split_all(&data_event(b"{\"e\":1}"), 4);
        assert_eq!(err[0].data().unwrap(), b"{\"e\":1}");
    }
}
