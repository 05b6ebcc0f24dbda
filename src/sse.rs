//! A Server-Sent Events parser for agents' streams (WHATWG `text/event-stream`), fed with
//! chunks as they arrive from the network.
//!
//! Lines end with CRLF, LF or CR (a CRLF split across two chunks is one line end); `data:`
//! lines of one event are joined with `\n`; `event:` and `id:` are kept; comments (`:`) and
//! unknown fields are ignored; a blank line dispatches the event. An event larger than
//! `event_bytes_max` is refused, so a misbehaving agent cannot grow the gateway's memory.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("stream event exceeds {0} bytes")]
    TooLarge(usize),
    #[error("stream event is not UTF-8")]
    NotUtf8,
}

pub struct SseParser {
    event_bytes_max: usize,
    line: Vec<u8>,
    data: Vec<u8>,
    /// `data` lines seen in this event (an event with none is not dispatched).
    data_lines: usize,
    event: Option<String>,
    id: Option<String>,
    /// Size of the event so far (all its lines), checked against the limit.
    event_bytes: usize,
    after_cr: bool,
    started: bool,
}

impl SseParser {
    pub fn new(event_bytes_max: usize) -> Self {
        SseParser {
            event_bytes_max,
            line: Vec::new(),
            data: Vec::new(),
            data_lines: 0,
            event: None,
            id: None,
            event_bytes: 0,
            after_cr: false,
            started: false,
        }
    }

    /// Feeds one chunk; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        let mut bytes = chunk;
        if !self.started && !bytes.is_empty() {
            self.started = true;
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let (head, tail) = rest.split_at(pos);
            let terminator = tail[0];
            rest = &tail[1..];
            if self.after_cr && terminator == b'\n' && head.is_empty() && self.line.is_empty() {
                // The LF of a CRLF whose CR ended the previous line.
                self.after_cr = false;
                continue;
            }
            self.extend_line(head)?;
            self.after_cr = terminator == b'\r';
            if let Some(event) = self.end_line()? {
                out.push(event);
            }
        }
        if !rest.is_empty() {
            self.after_cr = false;
            self.extend_line(rest)?;
        }
        Ok(out)
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        self.event_bytes += bytes.len();
        if self.event_bytes > self.event_bytes_max {
            return Err(SseError::TooLarge(self.event_bytes_max));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self) -> Result<Option<SseEvent>, SseError> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&line[..], &b""[..]),
        };
        match name {
            b"data" => {
                if self.data_lines > 0 {
                    self.data.push(b'\n');
                }
                self.data_lines += 1;
                self.data.extend_from_slice(value);
            }
            b"event" => self.event = Some(utf8(value)?),
            b"id" if !value.contains(&0) => self.id = Some(utf8(value)?),
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Result<Option<SseEvent>, SseError> {
        self.event_bytes = 0;
        let event = self.event.take();
        if std::mem::take(&mut self.data_lines) == 0 {
            return Ok(None);
        }
        let data = String::from_utf8(std::mem::take(&mut self.data)).map_err(|_| SseError::NotUtf8)?;
        // The last event id persists across events, as in the WHATWG model.
        Ok(Some(SseEvent { event, data, id: self.id.clone() }))
    }
}

fn utf8(bytes: &[u8]) -> Result<String, SseError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| SseError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> SseEvent {
        SseEvent { event: None, data: data.into(), id: None }
    }

    fn parse_all(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
        let mut p = SseParser::new(1 << 16);
        let mut out = Vec::new();
        for c in chunks {
            out.extend(p.push(c)?);
        }
        Ok(out)
    }

    /// The SDK's own framing (CRLF), verbatim.
    const SDK: &[u8] = b"data: {\"result\": {\"task\": {}}, \"id\": \"s1\"}\r\n\r\ndata: {\"result\": 2}\r\n\r\n";

    #[test]
    fn line_endings() {
        let expected = vec![ev("{\"result\": {\"task\": {}}, \"id\": \"s1\"}"), ev("{\"result\": 2}")];
        assert_eq!(parse_all(&[SDK]).unwrap(), expected);
        let lf = b"data: {\"result\": {\"task\": {}}, \"id\": \"s1\"}\n\ndata: {\"result\": 2}\n\n";
        assert_eq!(parse_all(&[lf]).unwrap(), expected);
        let cr = b"data: {\"result\": {\"task\": {}}, \"id\": \"s1\"}\r\rdata: {\"result\": 2}\r\r";
        assert_eq!(parse_all(&[cr]).unwrap(), expected);
    }

    /// Every way of cutting the stream in two, and one byte at a time, gives the same events.
    #[test]
    fn every_split_point() {
        let stream: &[u8] =
            b":keep-alive\r\n\r\nevent: update\r\nid: 7\r\ndata: line one\r\ndata:line two\r\n\r\ndata: {\"x\":1}\n\n";
        let whole = parse_all(&[stream]).unwrap();
        assert_eq!(whole.len(), 2);
        assert_eq!(
            whole[0],
            SseEvent { event: Some("update".into()), data: "line one\nline two".into(), id: Some("7".into()) }
        );
        assert_eq!(whole[1].data, "{\"x\":1}");
        assert_eq!(whole[1].event, None);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(parse_all(&[a, b]).unwrap(), whole, "cut at {cut}");
        }
        for sdk_cut in 0..=SDK.len() {
            let (a, b) = SDK.split_at(sdk_cut);
            assert_eq!(parse_all(&[a, b]).unwrap(), parse_all(&[SDK]).unwrap(), "sdk cut at {sdk_cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse_all(&bytes).unwrap(), whole);
    }

    #[test]
    fn comments_blank_events_and_unknown_fields() {
        let s = b": comment\n\nretry: 10\nfoo: bar\n\ndata\n\ndata:\n\n";
        // Events without data lines are not dispatched; `data` with no colon and `data:` with
        // nothing each make an event with empty data.
        assert_eq!(parse_all(&[s]).unwrap(), vec![ev(""), ev("")]);
        let s = b"data\ndata\n\n";
        assert_eq!(parse_all(&[s]).unwrap(), vec![ev("\n")]);
        assert_eq!(parse_all(&[b"\xEF\xBB\xBFdata: x\n\n"]).unwrap(), vec![ev("x")]);
        assert_eq!(parse_all(&[b"data: no end yet"]).unwrap(), vec![]);
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut p = SseParser::new(16);
        assert!(p.push(b"data: 0123456").unwrap().is_empty());
        assert_eq!(p.push(b"789abcdef\n"), Err(SseError::TooLarge(16)));
        let mut p = SseParser::new(16);
        let lines: Vec<u8> = b"data: 12345\n".repeat(2);
        assert_eq!(p.push(&lines), Err(SseError::TooLarge(16)));
        // The limit is per event: many small events pass.
        let mut p = SseParser::new(16);
        assert_eq!(p.push(&b"data: 12345\n\n".repeat(100)).unwrap().len(), 100);
        assert_eq!(SseParser::new(64).push(b"data: \xff\n\n"), Err(SseError::NotUtf8));
    }
}
