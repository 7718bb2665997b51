//! Requests-stream entries as Redis sends them, read as untrusted bytes.
//!
//! Anyone who can append to the requests stream can put anything in an entry: fields that are
//! not UTF-8, no `envelope`, megabytes, an id in the far future. The consumer reads replies as
//! raw [`redis::Value`]s (a reply never fails to convert), turns them into [`Entry`]s here, and
//! [`Entry::check`] says whether an entry is worth verifying or is [`Malformed`] (audited with
//! its id and size, never its content, and acknowledged).
//!
//! Pure: no I/O, `now` from the caller.

use redis::Value;
use vigil_protocol::names::{ENVELOPE_FIELD, MAX_REQUEST_ENTRY_BYTES};
use vigil_shared::time::Timestamp;

/// An entry whose id lies further ahead of the clock than this was not made by `XADD *`.
pub const MAX_ID_AHEAD_MS: i64 = 24 * 3600 * 1000;

/// One stream entry as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry id as Redis sent it (lossy UTF-8; Redis ids are ASCII).
    pub id: String,
    /// Every field and value, raw, in the order sent.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes of all field names and values.
    pub size: usize,
    /// The entry was deleted from the stream while pending (Redis sends no fields).
    pub deleted: bool,
}

/// Why an entry is not a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Larger than [`MAX_REQUEST_ENTRY_BYTES`].
    OverCap,
    /// A field name or value is not UTF-8.
    NotUtf8,
    /// No `envelope` field.
    NoEnvelope,
    /// The id lies far in the future (chosen by the writer, not by `XADD *`); left alone it
    /// would block every later append.
    FutureId,
}

impl Malformed {
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::OverCap => "over_cap",
            Malformed::NotUtf8 => "not_utf8",
            Malformed::NoEnvelope => "no_envelope",
            Malformed::FutureId => "future_id",
        }
    }
}

impl Entry {
    /// The `envelope` field, raw.
    pub fn envelope(&self) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k.as_slice() == ENVELOPE_FIELD.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// The envelope bytes of a well-formed entry, or why it is malformed (in this order: id,
    /// size, encoding, envelope).
    pub fn check(&self, now: Timestamp) -> Result<&[u8], Malformed> {
        if id_is_from_the_future(&self.id, now) {
            return Err(Malformed::FutureId);
        }
        if self.size > MAX_REQUEST_ENTRY_BYTES {
            return Err(Malformed::OverCap);
        }
        if self
            .fields
            .iter()
            .any(|(k, v)| std::str::from_utf8(k).is_err() || std::str::from_utf8(v).is_err())
        {
            return Err(Malformed::NotUtf8);
        }
        self.envelope().ok_or(Malformed::NoEnvelope)
    }
}

/// The id's millisecond part is beyond `now` + [`MAX_ID_AHEAD_MS`] (or not a number at all).
pub fn id_is_from_the_future(id: &str, now: Timestamp) -> bool {
    let ms = id.split_once('-').map_or(id, |(ms, _)| ms);
    match ms.parse::<u64>() {
        Ok(ms) => i64::try_from(ms).map_or(true, |ms| ms > now.0.saturating_add(MAX_ID_AHEAD_MS)),
        Err(_) => true,
    }
}

/// A reply that does not have the shape Redis documents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply shape: {0}")]
pub struct ShapeError(pub String);

fn shape(what: &str) -> ShapeError {
    ShapeError(what.to_string())
}

/// `XREADGROUP ... STREAMS <key> <id>`: every entry of every stream in the reply (nil: none).
/// RESP2 (array of `[key, entries]`) and RESP3 (map of key to entries) both parse.
pub fn parse_read_reply(v: Value) -> Result<Vec<Entry>, ShapeError> {
    let streams: Vec<Value> = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => Ok(pair.swap_remove(1)),
                _ => Err(shape("stream is not [key, entries]")),
            })
            .collect::<Result<_, _>>()?,
        Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        _ => return Err(shape("XREADGROUP reply is neither nil, array nor map")),
    };
    let mut out = Vec::new();
    for entries in streams {
        out.extend(parse_entries(entries)?);
    }
    Ok(out)
}

/// An array of `[id, [field, value, ...]]`; `[id, nil]` is an entry deleted while pending.
pub fn parse_entries(v: Value) -> Result<Vec<Entry>, ShapeError> {
    let items = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(shape("entries are not an array")),
    };
    items.into_iter().map(parse_entry).collect()
}

fn parse_entry(v: Value) -> Result<Entry, ShapeError> {
    let Value::Array(mut pair) = v else {
        return Err(shape("entry is not [id, fields]"));
    };
    if pair.len() != 2 {
        return Err(shape("entry is not [id, fields]"));
    }
    let body = pair.pop().unwrap_or(Value::Nil);
    let id = text(&pair[0]).ok_or_else(|| shape("entry id is not a string"))?;
    let flat: Vec<Value> = match body {
        Value::Nil => {
            return Ok(Entry {
                id,
                fields: Vec::new(),
                size: 0,
                deleted: true,
            });
        }
        Value::Array(flat) => flat,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => return Err(shape("entry fields are not an array")),
    };
    let mut fields = Vec::with_capacity(flat.len() / 2);
    let mut size = 0usize;
    let mut it = flat.into_iter();
    while let Some(k) = it.next() {
        let k = bytes(k);
        let v = it.next().map(bytes).unwrap_or_default();
        size = size.saturating_add(k.len()).saturating_add(v.len());
        fields.push((k, v));
    }
    Ok(Entry {
        id,
        fields,
        size,
        deleted: false,
    })
}

/// A string-ish value as text (lossy), `None` for anything else.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// A value as raw bytes (moved, not copied); anything that is not a string is empty.
fn bytes(v: Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.into_bytes(),
        Value::VerbatimString { text, .. } => text.into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn bulk(b: &[u8]) -> Value {
        Value::BulkString(b.to_vec())
    }

    fn entry(id: &str, fields: &[(&[u8], &[u8])]) -> Value {
        Value::Array(vec![
            bulk(id.as_bytes()),
            Value::Array(
                fields
                    .iter()
                    .flat_map(|(k, v)| [bulk(k), bulk(v)])
                    .collect(),
            ),
        ])
    }

    fn read_reply(entries: Vec<Value>) -> Value {
        Value::Array(vec![Value::Array(vec![
            bulk(b"vigil:requests"),
            Value::Array(entries),
        ])])
    }

    #[test]
    fn hostile_entries_are_classified_not_fatal() {
        let big = vec![b'a'; MAX_REQUEST_ENTRY_BYTES + 1];
        let reply = read_reply(vec![
            entry("1800000000000-0", &[(b"envelope", b"{}")]),
            entry("1800000000000-1", &[(b"\xff\xfe", b"x")]),
            entry("1800000000000-2", &[(b"envelope", b"\xff")]),
            entry("1800000000000-3", &[(b"other", b"x")]),
            entry("1800000000000-4", &[(b"envelope", &big)]),
            entry(
                "18446744073709551615-18446744073709551615",
                &[(b"envelope", b"{}")],
            ),
            Value::Array(vec![bulk(b"1800000000000-5"), Value::Nil]),
        ]);
        let entries = parse_read_reply(reply).expect("parses");
        let got: Vec<_> = entries
            .iter()
            .map(|e| e.check(NOW).map(<[u8]>::len))
            .collect();
        assert_eq!(
            got,
            [
                Ok(2),
                Err(Malformed::NotUtf8),
                Err(Malformed::NotUtf8),
                Err(Malformed::NoEnvelope),
                Err(Malformed::OverCap),
                Err(Malformed::FutureId),
                Err(Malformed::NoEnvelope),
            ]
        );
        assert!(entries[6].deleted);
        assert_eq!(entries[4].size, MAX_REQUEST_ENTRY_BYTES + 9);
    }

    #[test]
    fn odd_shapes_are_errors_or_empty() {
        assert_eq!(parse_read_reply(Value::Nil), Ok(Vec::new()));
        assert!(parse_read_reply(Value::Int(3)).is_err());
        assert!(parse_read_reply(Value::Array(vec![Value::Int(1)])).is_err());
        assert!(parse_entries(Value::Array(vec![Value::Array(vec![])])).is_err());
        // An odd number of field items keeps the last name with an empty value.
        let e = parse_entries(Value::Array(vec![Value::Array(vec![
            bulk(b"1-0"),
            Value::Array(vec![bulk(b"envelope")]),
        ])]))
        .expect("parses");
        assert_eq!(e[0].envelope(), Some(&b""[..]));
    }

    #[test]
    fn future_ids() {
        assert!(!id_is_from_the_future("1800000000000-0", NOW));
        assert!(!id_is_from_the_future("1800000060000-7", NOW));
        assert!(id_is_from_the_future("1900000000000-0", NOW));
        assert!(id_is_from_the_future("18446744073709551615-0", NOW));
        assert!(id_is_from_the_future("garbage", NOW));
    }
}
