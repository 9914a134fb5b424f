//! JSON Lines shards (plain, gzip or zstd; Pile, Dolma and cc_net style): one document per
//! line, the text taken from a configurable (dotted) field, metadata fields kept as a JSON
//! object. Invalid UTF-8, invalid JSON, a missing text field or an oversized line is rejected
//! with its line number and offset; the rest of the shard is still read.

use super::builder::{DocRow, DocumentSink};
use super::source::SourceError;
use super::stream::DecodedStream;
use super::warc::{ReadError, Stop};
use harman_schemas::RejectReason;
use serde_json::Value;
use std::io::Read;

/// Which fields of a line become which columns.
#[derive(Debug, Clone)]
pub struct JsonlFields {
    pub text: String,
    pub id: Option<String>,
    pub url: Option<String>,
    pub meta: Vec<String>,
    pub max_line_bytes: u64,
}

/// Look up a dotted path (`meta.pile_set_name`) in a JSON value.
pub fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    if let Some(v) = value.get(path) {
        return Some(v);
    }
    let mut cur = value;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Read every line of a JSONL shard into `sink`.
pub fn read_lines<R: Read>(
    stream: &mut DecodedStream<R>,
    fields: &JsonlFields,
    sink: &mut DocumentSink<'_>,
) -> Result<(), ReadError> {
    let mut line_no: u64 = 0;
    let mut skip_partial = false;
    loop {
        let start = stream.offset();
        // Find the end of the line, growing the window as needed.
        let mut searched = 0;
        let line_len = loop {
            if let Some(nl) = memchr::memchr(b'\n', &stream.avail()[searched..]) {
                let len = searched + nl;
                break (len as u64 <= fields.max_line_bytes).then_some(len);
            }
            searched = stream.avail().len();
            if searched as u64 > fields.max_line_bytes {
                break None;
            }
            match stream.fill_more() {
                Ok(true) => {}
                Ok(false) => break Some(stream.avail().len()),
                Err(SourceError::Corrupt(c)) => {
                    line_no += 1;
                    sink.add_reject(
                        start,
                        Some(line_no),
                        c.reason,
                        format!("line {line_no} at offset {start}: {}", c.detail),
                    );
                    stream.discard();
                    skip_partial = true;
                    searched = 0;
                }
                Err(SourceError::Io(e)) => return Err(e.into()),
            }
        };
        let Some(line_len) = line_len else {
            // Oversized: reject and skip to the end of the line without buffering it.
            line_no += 1;
            sink.add_reject(
                start,
                Some(line_no),
                RejectReason::OversizedRecord,
                format!(
                    "line {line_no} at offset {start}: longer than max_record_bytes = {}",
                    fields.max_line_bytes
                ),
            );
            loop {
                if let Some(nl) = memchr::memchr(b'\n', stream.avail()) {
                    stream.consume(nl + 1);
                    break;
                }
                let n = stream.avail().len();
                stream.consume(n);
                match stream.fill_more() {
                    Ok(true) => {}
                    Ok(false) => return Ok(()),
                    Err(SourceError::Corrupt(_)) => stream.discard(),
                    Err(SourceError::Io(e)) => return Err(e.into()),
                }
            }
            continue;
        };
        if line_len == 0 && stream.at_eof() {
            return Ok(());
        }
        let consumed = (line_len + 1).min(stream.avail().len());
        if std::mem::take(&mut skip_partial) {
            // The tail of a line whose start was lost with a corrupt member.
            stream.consume(consumed);
            continue;
        }
        line_no += 1;
        let raw = &stream.avail()[..line_len];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            sink.count("blank_lines");
            stream.consume(consumed);
            continue;
        }
        let outcome = line_to_row(raw, start, line_no, fields, sink);
        stream.consume(consumed);
        outcome?;
    }
}

fn line_to_row(
    raw: &[u8],
    offset: u64,
    line_no: u64,
    fields: &JsonlFields,
    sink: &mut DocumentSink<'_>,
) -> Result<(), Stop> {
    let reject = |sink: &mut DocumentSink<'_>, reason, why: String| {
        sink.add_reject(
            offset,
            Some(line_no),
            reason,
            format!("line {line_no} at offset {offset}: {why}"),
        );
        Ok(())
    };
    let text = match std::str::from_utf8(raw) {
        Ok(t) => t,
        Err(e) => {
            return reject(
                sink,
                RejectReason::InvalidUtf8,
                format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
            )
        }
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return reject(sink, RejectReason::InvalidJson, "not a JSON object".into()),
        Err(e) => return reject(sink, RejectReason::InvalidJson, e.to_string()),
    };
    let Some(Value::String(body)) = lookup(&value, &fields.text) else {
        return reject(
            sink,
            RejectReason::MissingField,
            format!("no string field `{}`", fields.text),
        );
    };
    let id = fields
        .id
        .as_deref()
        .and_then(|f| lookup(&value, f))
        .and_then(scalar_string);
    let url = fields
        .url
        .as_deref()
        .and_then(|f| lookup(&value, f))
        .and_then(scalar_string);
    let meta = if fields.meta.is_empty() {
        None
    } else {
        let mut map = serde_json::Map::new();
        for f in &fields.meta {
            if let Some(v) = lookup(&value, f) {
                map.insert(f.clone(), v.clone());
            }
        }
        Some(Value::Object(map).to_string())
    };
    sink.data.add("text_bytes", body.len() as u64);
    sink.push(&DocRow {
        offset,
        index: line_no,
        record_id: id.as_deref(),
        url: url.as_deref(),
        text: Some(body),
        meta: meta.as_deref(),
        ..DocRow::default()
    })
}
