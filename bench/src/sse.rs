//! Minimal Server-Sent Events framing for the benchmark tools: an incremental
//! counter of complete events (to time the first event as bytes arrive), a
//! splitter that hands back the joined `data` payload of each event in a
//! buffered body, and an incremental splitter that does the same for a body
//! fed in arbitrary chunks (for long-lived streams).

/// Counts complete SSE events that carry data (a `data:` line followed, later,
/// by a blank line) in a byte stream fed in arbitrary chunks. Comment-only
/// blocks such as keep-alives are not counted.
#[derive(Debug, Default, Clone)]
pub struct EventCounter {
    /// Bytes seen on the current line (CR excluded).
    line_len: usize,
    /// Whether the current line still matches the `data:` prefix so far.
    prefix_ok: bool,
    /// Whether the current event has seen a data line.
    pending: bool,
}

const DATA: &[u8] = b"data:";

impl EventCounter {
    /// Feeds the next chunk and returns how many events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> u64 {
        let mut done = 0;
        for &b in chunk {
            match b {
                b'\n' => {
                    if self.line_len == 0 {
                        if self.pending {
                            done += 1;
                            self.pending = false;
                        }
                    } else {
                        if self.prefix_ok && self.line_len >= DATA.len() {
                            self.pending = true;
                        }
                        self.line_len = 0;
                    }
                }
                b'\r' => {}
                _ => {
                    if self.line_len == 0 {
                        self.prefix_ok = true;
                    }
                    if self.line_len < DATA.len() && DATA[self.line_len] != b {
                        self.prefix_ok = false;
                    }
                    self.line_len += 1;
                }
            }
        }
        done
    }
}

/// Calls `f` with the payload of every complete event in `body` that has at
/// least one `data:` line (multiple data lines are joined with `\n`, as the SSE
/// specification says). An unterminated trailing event is ignored. `scratch`
/// is reused between calls to avoid allocating.
pub fn for_each_data(body: &[u8], scratch: &mut Vec<u8>, mut f: impl FnMut(&[u8])) {
    scratch.clear();
    let mut has_data = false;
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if has_data {
                f(scratch);
                scratch.clear();
                has_data = false;
            }
        } else if let Some(rest) = line.strip_prefix(b"data:") {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            if has_data {
                scratch.push(b'\n');
            }
            scratch.extend_from_slice(rest);
            has_data = true;
        }
    }
}

/// Hands back the joined `data` payload of every complete event in a byte
/// stream fed in arbitrary chunks (LF or CRLF line ends). Events without data
/// (comments, keep-alives) are skipped.
#[derive(Debug, Default, Clone)]
pub struct DataSplitter {
    /// The current, unterminated line.
    line: Vec<u8>,
    /// The current event's data so far.
    data: Vec<u8>,
    /// Whether the current event has seen a data line.
    has_data: bool,
}

impl DataSplitter {
    /// Feeds the next chunk, calling `f` with each event it completes.
    pub fn feed(&mut self, chunk: &[u8], mut f: impl FnMut(&[u8])) {
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(end);
            rest = &tail[1..];
            if self.line.is_empty() {
                self.end_line(head, &mut f);
            } else {
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                self.end_line(&line, &mut f);
                self.line = line;
                self.line.clear();
            }
        }
        self.line.extend_from_slice(rest);
    }

    fn end_line(&mut self, line: &[u8], f: &mut impl FnMut(&[u8])) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                f(&self.data);
                self.data.clear();
                self.has_data = false;
            }
        } else if let Some(rest) = line.strip_prefix(DATA) {
            let rest = rest.strip_prefix(b" ").unwrap_or(rest);
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(rest);
            self.has_data = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_events_across_chunks() {
        let body = b"data: {\"a\":1}\r\n\r\ndata: {\"b\":2}\n\n: comment\n\nevent: x\ndata: 3\r\n\r\n";
        for split in 0..body.len() {
            let mut c = EventCounter::default();
            let n = c.feed(&body[..split]) + c.feed(&body[split..]);
            assert_eq!(n, 3, "split at {split}");
        }
    }

    #[test]
    fn extracts_data_payloads() {
        let body = b"data: one\r\n\r\ndata:two\ndata: three\n\n: note\n\ndata: partial";
        let mut scratch = Vec::new();
        let mut seen = Vec::new();
        for_each_data(body, &mut scratch, |d| seen.push(String::from_utf8_lossy(d).into_owned()));
        assert_eq!(seen, ["one", "two\nthree"]);
    }

    #[test]
    fn splits_events_across_chunks() {
        let body: &[u8] = b"data: one\r\n\r\n: keep-alive\n\ndata:two\ndata: three\n\ndata: {\"a\":1}\n\ndata: partial";
        for split in 0..body.len() {
            for split2 in split..body.len() {
                let mut splitter = DataSplitter::default();
                let mut seen = Vec::new();
                for part in [&body[..split], &body[split..split2], &body[split2..]] {
                    splitter.feed(part, |d| seen.push(String::from_utf8_lossy(d).into_owned()));
                }
                assert_eq!(seen, ["one", "two\nthree", "{\"a\":1}"], "splits at {split}, {split2}");
            }
        }
    }
}
