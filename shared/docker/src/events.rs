//! Incremental parsing of the `/events` stream: newline-delimited JSON that arrives in body
//! frames of any size. A frame may hold several lines, part of one, or both.
//!
//! Pure: bytes in, events out. The socket side is [`crate::EventStream`].
//!
//! Rules:
//! - a line longer than [`MAX_EVENT_LINE`] yields one `Err(TooLarge)` and is skipped up to its
//!   newline, so a flood cannot grow memory without bound;
//! - a malformed line yields `Err(Decode)` and parsing goes on with the next line;
//! - blank lines and events of other types (`image`, `network`, ...) are skipped.

use crate::api::EventMessage;
use crate::error::DockerError;
use crate::model::ContainerEvent;
use bytes::{Bytes, BytesMut};

/// The longest single event line accepted (1 MiB). Real events are well under 4 KiB.
pub const MAX_EVENT_LINE: usize = 1 << 20;

/// Splits a byte stream into lines, bounded in memory.
#[derive(Debug)]
pub struct LineSplitter {
    buf: BytesMut,
    /// Bytes of `buf` already searched for a newline.
    scanned: usize,
    /// Dropping the rest of an over-long line until its newline.
    discarding: bool,
    max_line: usize,
    finished: bool,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        LineSplitter {
            buf: BytesMut::new(),
            scanned: 0,
            discarding: false,
            max_line,
            finished: false,
        }
    }

    /// Appends a chunk. Call [`LineSplitter::next_line`] until it returns `None` between pushes
    /// to keep memory bounded by one line plus one chunk.
    pub fn push(&mut self, mut chunk: &[u8]) {
        if self.discarding {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.discarding = false;
                    chunk = &chunk[i + 1..];
                }
                None => return,
            }
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Marks the end of input: a last line without a newline becomes available.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// The next complete line without its `\n` (and `\r`), or an error for an over-long line.
    pub fn next_line(&mut self) -> Option<Result<Bytes, DockerError>> {
        let too_large = DockerError::TooLarge {
            limit: self.max_line,
        };
        match self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = self.scanned + i;
                let mut line = self.buf.split_to(end + 1);
                self.scanned = 0;
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                if line.len() > self.max_line {
                    return Some(Err(too_large));
                }
                Some(Ok(line.freeze()))
            }
            None if self.buf.len() > self.max_line => {
                self.buf.clear();
                self.scanned = 0;
                self.discarding = !self.finished;
                Some(Err(too_large))
            }
            None if self.finished && !self.buf.is_empty() => {
                self.scanned = 0;
                Some(Ok(self.buf.split().freeze()))
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }
}

/// Parses one line of the stream. `Ok(None)` for a blank line or a non-container event.
pub fn parse_event_line(line: &[u8]) -> Result<Option<ContainerEvent>, DockerError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let message: EventMessage = serde_json::from_slice(line).map_err(|e| DockerError::Decode {
        what: "event",
        error: e.to_string(),
    })?;
    message.into_container_event()
}

/// Lines in, container events out, remembering the engine time of the last event seen.
#[derive(Debug)]
pub struct EventDecoder {
    lines: LineSplitter,
    last_time_nano: Option<i64>,
}

impl EventDecoder {
    /// `since_nanos` seeds [`EventDecoder::last_time_nano`], so a reconnect before any event
    /// arrives resumes from the same point.
    pub fn new(since_nanos: Option<i64>) -> Self {
        EventDecoder {
            lines: LineSplitter::new(MAX_EVENT_LINE),
            last_time_nano: since_nanos,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.lines.push(chunk);
    }

    pub fn finish(&mut self) {
        self.lines.finish();
    }

    /// The next event or error from what was pushed so far; `None` when more input is needed.
    pub fn next_event(&mut self) -> Option<Result<ContainerEvent, DockerError>> {
        loop {
            let line = match self.lines.next_line()? {
                Ok(line) => line,
                Err(e) => return Some(Err(e)),
            };
            match parse_event_line(&line) {
                Ok(Some(event)) => {
                    self.last_time_nano = Some(
                        self.last_time_nano
                            .map_or(event.time_nano, |t| t.max(event.time_nano)),
                    );
                    return Some(Ok(event));
                }
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Engine time (`timeNano`) of the latest event decoded, or the `since` it started from.
    pub fn last_time_nano(&self) -> Option<i64> {
        self.last_time_nano
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventAction, Health};

    const KILL: &str = r#"{"status":"kill","id":"0fde985c5da5","from":"vigil-test/busybox:latest","Type":"container","Action":"kill","Actor":{"ID":"0fde985c5da5","Attributes":{"com.docker.compose.project":"demo","image":"vigil-test/busybox:latest","name":"web-1","signal":"9","org.example.test":"1"}},"scope":"local","time":1795473053,"timeNano":1795473053871743237}"#;
    const DIE: &str = r#"{"status":"die","id":"0fde985c5da5","from":"vigil-test/busybox:latest","Type":"container","Action":"die","Actor":{"ID":"0fde985c5da5","Attributes":{"com.docker.compose.project":"demo","exitCode":"137","image":"vigil-test/busybox:latest","name":"web-1","org.example.test":"1"}},"scope":"local","time":1795473053,"timeNano":1795473053922620017}"#;
    const HEALTH: &str = r#"{"status":"health_status: unhealthy","id":"abc","from":"img","Type":"container","Action":"health_status: unhealthy","Actor":{"ID":"abc","Attributes":{"name":"db","image":"img"}},"scope":"local","time":1795473054,"timeNano":1795473054000000001}"#;
    const NETWORK: &str = r#"{"Type":"network","Action":"connect","Actor":{"ID":"952c","Attributes":{"container":"abc","name":"bridge","type":"bridge"}},"scope":"local","time":1795473054,"timeNano":1795473054000000002}"#;

    fn drain(d: &mut EventDecoder) -> Vec<Result<ContainerEvent, DockerError>> {
        std::iter::from_fn(|| d.next_event()).collect()
    }

    #[test]
    fn several_events_in_one_chunk() {
        let mut d = EventDecoder::new(None);
        d.push(format!("{KILL}\n{DIE}\n{HEALTH}\n").as_bytes());
        let got = drain(&mut d);
        assert_eq!(got.len(), 3);
        let actions: Vec<_> = got.into_iter().map(|e| e.unwrap().action).collect();
        assert_eq!(
            actions,
            vec![
                EventAction::Kill { signal: Some(9) },
                EventAction::Die {
                    exit_code: Some(137)
                },
                EventAction::HealthStatus(Health::Unhealthy),
            ]
        );
        assert_eq!(d.last_time_nano(), Some(1795473054000000001));
    }

    #[test]
    fn event_split_across_chunks_at_every_byte() {
        let input = format!("{KILL}\r\n{DIE}\n");
        for cut in 0..input.len() {
            let mut d = EventDecoder::new(None);
            d.push(&input.as_bytes()[..cut]);
            let mut got = drain(&mut d);
            d.push(&input.as_bytes()[cut..]);
            got.extend(drain(&mut d));
            assert_eq!(got.len(), 2, "cut at {cut}");
            let first = got[0].as_ref().unwrap();
            assert_eq!(first.container.name, "web-1");
            assert!(got[1].is_ok(), "cut at {cut}: {:?}", got[1]);
        }
    }

    #[test]
    fn partial_line_waits_for_more_input() {
        let mut d = EventDecoder::new(Some(5));
        d.push(&KILL.as_bytes()[..40]);
        assert!(d.next_event().is_none());
        assert_eq!(d.last_time_nano(), Some(5), "since seeds the resume point");
        d.push(&KILL.as_bytes()[40..]);
        assert!(d.next_event().is_none(), "no newline yet");
        d.finish();
        let ev = d.next_event().unwrap().unwrap();
        assert_eq!(ev.action, EventAction::Kill { signal: Some(9) });
        assert!(d.next_event().is_none());
    }

    #[test]
    fn garbage_line_is_an_error_and_the_stream_goes_on() {
        let mut d = EventDecoder::new(None);
        d.push(
            format!("not json at all\n\n{{\"Type\":\"container\"}}\n{NETWORK}\n{DIE}\n").as_bytes(),
        );
        let got = drain(&mut d);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(matches!(
            got[0],
            Err(DockerError::Decode { what: "event", .. })
        ));
        assert!(
            matches!(got[1], Err(DockerError::Decode { .. })),
            "a container event without an id is an error: {:?}",
            got[1]
        );
        let die = got[2].as_ref().unwrap();
        assert_eq!(
            die.action,
            EventAction::Die {
                exit_code: Some(137)
            }
        );
    }

    #[test]
    fn over_long_line_is_rejected_once_and_skipped() {
        let mut d = EventDecoder::new(None);
        let chunk = vec![b'x'; 300 * 1024];
        for _ in 0..4 {
            d.push(&chunk);
        }
        let got = drain(&mut d);
        assert_eq!(got.len(), 1);
        assert!(matches!(
            got[0],
            Err(DockerError::TooLarge {
                limit: MAX_EVENT_LINE
            })
        ));
        // The rest of the long line is dropped without buffering, then parsing resumes.
        for _ in 0..10 {
            d.push(&chunk);
            assert!(d.next_event().is_none());
        }
        d.push(format!("tail of the long line\n{KILL}\n").as_bytes());
        let got = drain(&mut d);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].is_ok());
    }

    #[test]
    fn long_line_within_one_chunk_is_rejected() {
        let mut s = LineSplitter::new(8);
        s.push(b"0123456789\nok\n");
        assert!(matches!(
            s.next_line(),
            Some(Err(DockerError::TooLarge { limit: 8 }))
        ));
        assert_eq!(s.next_line().unwrap().unwrap(), Bytes::from_static(b"ok"));
        assert!(s.next_line().is_none());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut d = EventDecoder::new(None);
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let mut chunk = Vec::new();
            for _ in 0..(x % 97) {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                chunk.push((x >> 16) as u8);
            }
            d.push(&chunk);
            let _ = drain(&mut d);
        }
    }
}
