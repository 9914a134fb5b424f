//! WARC 1.0/1.1 (and legacy ARC) record reading over a decompressed stream. Every record is
//! handed to a [`RecordSink`] with its ordinal and location; a malformed header, truncated
//! record, oversized record or corrupt gzip member becomes a reject and reading resumes at the
//! next record.

use super::chunk::ChunkMem;
use super::source::SourceError;
use super::stream::DecodedStream;
use harman_schemas::RejectReason;
use memchr::memmem;
use std::io::Read;
use std::sync::Arc;

/// Longest WARC/ARC header accepted.
const MAX_HEADER: usize = 256 * 1024;

/// The container a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Warc,
    Arc,
}

impl Container {
    pub fn as_str(self) -> &'static str {
        match self {
            Container::Warc => "warc",
            Container::Arc => "arc",
        }
    }
}

/// One record as read from the shard, borrowing its block from the read buffer.
#[derive(Debug)]
pub struct RawRecord<'a> {
    /// Ordinal of the record in the shard, counting every record (kept, skipped or rejected).
    pub index: u64,
    /// Location: compressed offset of the gzip member holding the record, else byte offset.
    pub offset: u64,
    pub container: Container,
    /// WARC-Type, lowercased (`response`, `resource`, ...; `unknown` when absent).
    pub warc_type: String,
    pub record_id: Option<String>,
    /// WARC-Target-URI without surrounding `<>`.
    pub target_uri: Option<String>,
    pub date: Option<String>,
    /// The WARC header's Content-Type (e.g. `application/http; msgtype=response`).
    pub content_type: Option<String>,
    pub block: &'a [u8],
    /// The decode chunk `block` lies in: a sink may keep a reference to it instead of copying.
    pub chunk: Option<&'a Arc<ChunkMem>>,
}

/// Why reading stopped early.
#[derive(Debug)]
pub struct Stop;

/// Receives what the reader finds.
pub trait RecordSink {
    /// A record whose type the caller asked for.
    fn record(&mut self, rec: &RawRecord<'_>) -> Result<(), Stop>;
    /// A record (or stretch of bytes) that could not be read.
    fn reject(
        &mut self,
        offset: u64,
        index: Option<u64>,
        reason: RejectReason,
        detail: String,
    ) -> Result<(), Stop>;
    /// A record of a type the caller did not ask for (warcinfo, request, revisit, ...).
    fn skipped(&mut self, record_type: &str);
    /// An observation worth counting that is not an error.
    fn note(&mut self, counter: &str);
}

/// Reader settings.
#[derive(Debug, Clone)]
pub struct WarcReadOptions {
    /// Records with a larger block are rejected (and skipped without being buffered).
    pub max_record_bytes: u64,
    /// WARC-Types handed to [`RecordSink::record`]; others are counted as skipped.
    pub keep_types: Vec<String>,
}

/// Errors that end the shard.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
    #[error("stopped by the consumer")]
    Stopped,
}

impl From<Stop> for ReadError {
    fn from(_: Stop) -> Self {
        ReadError::Stopped
    }
}

/// Outcome of a step of the reader.
enum Step {
    Continue,
    End,
}

/// Parsed WARC header fields harman keeps.
#[derive(Default, Debug)]
struct WarcHeader {
    warc_type: Option<String>,
    record_id: Option<String>,
    target_uri: Option<String>,
    date: Option<String>,
    content_type: Option<String>,
    content_length: Option<u64>,
}

fn header_value(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).trim().to_string()
}

fn parse_warc_header(head: &[u8]) -> Result<WarcHeader, String> {
    let mut lines = head.split(|&b| b == b'\n');
    let version = lines.next().unwrap_or_default();
    let version = version.strip_suffix(b"\r").unwrap_or(version);
    if !version.starts_with(b"WARC/") {
        return Err(format!(
            "expected a `WARC/1.x` version line, found {:?}",
            String::from_utf8_lossy(&version[..version.len().min(40)])
        ));
    }
    let mut h = WarcHeader::default();
    let mut last: Option<&mut Option<String>> = None;
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // Folded continuation of the previous field.
            if let Some(Some(v)) = last.as_deref_mut() {
                v.push(' ');
                v.push_str(&header_value(line));
            }
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return Err(format!(
                "header line without a colon: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(60)])
            ));
        };
        let name = &line[..colon];
        let value = &line[colon + 1..];
        let slot = if name.eq_ignore_ascii_case(b"WARC-Type") {
            &mut h.warc_type
        } else if name.eq_ignore_ascii_case(b"WARC-Record-ID") {
            &mut h.record_id
        } else if name.eq_ignore_ascii_case(b"WARC-Target-URI") {
            &mut h.target_uri
        } else if name.eq_ignore_ascii_case(b"WARC-Date") {
            &mut h.date
        } else if name.eq_ignore_ascii_case(b"Content-Type") {
            &mut h.content_type
        } else if name.eq_ignore_ascii_case(b"Content-Length") {
            let text = header_value(value);
            let n = text
                .parse::<u64>()
                .map_err(|_| format!("Content-Length {text:?} is not a number"))?;
            h.content_length = Some(n);
            last = None;
            continue;
        } else {
            last = None;
            continue;
        };
        // Keep the first occurrence of repeated fields.
        if slot.is_none() {
            *slot = Some(header_value(value));
            last = Some(slot);
        } else {
            last = None;
        }
    }
    if h.content_length.is_none() {
        return Err("missing Content-Length".into());
    }
    Ok(h)
}

/// Position just past the blank line that ends a header (`\r\n\r\n`, tolerating bare `\n`).
fn find_header_end(buf: &[u8], from: usize) -> Option<usize> {
    for nl in memchr::memchr_iter(b'\n', &buf[from..]) {
        let i = from + nl;
        match buf.get(i + 1) {
            Some(b'\n') => return Some(i + 2),
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
            _ => {}
        }
    }
    None
}

/// Read every record of a WARC or ARC shard into `sink`.
pub fn read_records<R: Read, S: RecordSink>(
    stream: &mut DecodedStream<R>,
    opts: &WarcReadOptions,
    sink: &mut S,
) -> Result<(), ReadError> {
    let mut reader = Reader {
        index: 0,
        resync: false,
        container: Container::Warc,
        opts,
    };
    match stream.ensure(16) {
        Ok(_) => {
            if stream.avail().starts_with(b"filedesc://") {
                reader.container = Container::Arc;
            }
        }
        Err(SourceError::Corrupt(c)) => {
            reader.corrupt(stream, sink, c, None)?;
        }
        Err(SourceError::Io(e)) => return Err(e.into()),
    }
    loop {
        let step = match reader.container {
            Container::Warc => reader.warc_step(stream, sink),
            Container::Arc => reader.arc_step(stream, sink),
        };
        match step {
            Ok(Step::Continue) => {}
            Ok(Step::End) => return Ok(()),
            Err(StepError::Source(SourceError::Corrupt(c), at)) => {
                // Corruption found while looking for the next record loses that record
                // (and whatever else its member held); stray bytes between members do not.
                let at =
                    at.or((c.reason != RejectReason::Garbage).then_some((c.offset, reader.index)));
                reader.corrupt(stream, sink, c, at)?;
            }
            Err(StepError::Source(SourceError::Io(e), _)) => return Err(e.into()),
            Err(StepError::Stop) => return Err(ReadError::Stopped),
        }
    }
}

/// A step failure: a source error (with the record it interrupted) or the sink stopping.
enum StepError {
    Source(SourceError, Option<(u64, u64)>),
    Stop,
}

impl From<Stop> for StepError {
    fn from(_: Stop) -> Self {
        StepError::Stop
    }
}

struct Reader<'o> {
    index: u64,
    resync: bool,
    container: Container,
    opts: &'o WarcReadOptions,
}

/// Attach the record being read to a source error.
fn at(record: Option<(u64, u64)>) -> impl FnOnce(SourceError) -> StepError {
    move |e| StepError::Source(e, record)
}

impl Reader<'_> {
    /// A corrupt member or frame: reject the record it interrupted (or the member itself) and
    /// resynchronise on the next record.
    fn corrupt<R: Read, S: RecordSink>(
        &mut self,
        stream: &mut DecodedStream<R>,
        sink: &mut S,
        c: super::source::Corruption,
        record: Option<(u64, u64)>,
    ) -> Result<(), ReadError> {
        match record {
            Some((offset, index)) => {
                self.index = self.index.max(index + 1);
                sink.reject(
                    offset,
                    Some(index),
                    c.reason,
                    format!("record #{index} at offset {offset}: {}", c.detail),
                )?;
            }
            None => sink.reject(c.offset, None, c.reason, c.detail)?,
        }
        stream.discard();
        self.resync = true;
        Ok(())
    }

    /// Skip CR/LF between records; false at the end of the shard.
    fn skip_blank<R: Read>(&self, stream: &mut DecodedStream<R>) -> Result<bool, SourceError> {
        loop {
            let n = stream
                .avail()
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            stream.consume(n);
            if !stream.avail().is_empty() {
                return Ok(true);
            }
            if !stream.fill_more()? {
                return Ok(false);
            }
        }
    }

    /// Move to the next `WARC/` at the start of a line; false at the end of the shard.
    fn find_record_start<R: Read>(
        &self,
        stream: &mut DecodedStream<R>,
    ) -> Result<bool, SourceError> {
        let mut first_ok = true;
        loop {
            let avail = stream.avail();
            let mut from = 0;
            while let Some(i) = memmem::find(&avail[from..], b"WARC/") {
                let pos = from + i;
                if (pos == 0 && first_ok) || (pos > 0 && avail[pos - 1] == b'\n') {
                    stream.consume(pos);
                    return Ok(true);
                }
                from = pos + 1;
            }
            let keep = avail.len().min(6);
            let drop = avail.len() - keep;
            stream.consume(drop);
            first_ok = false;
            if !stream.fill_more()? {
                let rest = stream.avail().len();
                stream.consume(rest);
                return Ok(false);
            }
        }
    }

    fn warc_step<R: Read, S: RecordSink>(
        &mut self,
        stream: &mut DecodedStream<R>,
        sink: &mut S,
    ) -> Result<Step, StepError> {
        if !self.skip_blank(stream).map_err(at(None))? {
            return Ok(Step::End);
        }
        if self.resync {
            self.resync = false;
            if !self.find_record_start(stream).map_err(at(None))? {
                return Ok(Step::End);
            }
        }
        let start = stream.offset();
        let offset = stream.src.locate(start);
        stream.src.forget_before(start);
        let index = self.index;
        let here = Some((offset, index));

        // Bytes between records that do not start a record: skip them to the next one.
        stream.ensure(5).map_err(at(None))?;
        if !stream.avail().starts_with(b"WARC/") {
            let found = self.find_record_start(stream).map_err(at(None))?;
            let skipped = stream.offset() - start;
            sink.reject(
                offset,
                None,
                RejectReason::Garbage,
                format!(
                    "{skipped} bytes at offset {offset} (decoded position {start}) are not a WARC record{}",
                    if found { "; skipped to the next record" } else { " and run to the end of the input" }
                ),
            )?;
            return Ok(if found { Step::Continue } else { Step::End });
        }

        // Header: up to the first blank line.
        let mut searched = 0;
        let header_len = loop {
            if let Some(end) = find_header_end(stream.avail(), searched) {
                break end;
            }
            searched = stream.avail().len().saturating_sub(3);
            if stream.avail().len() > MAX_HEADER {
                self.index += 1;
                self.resync = true;
                stream.consume(1);
                sink.reject(
                    offset,
                    Some(index),
                    RejectReason::MalformedHeader,
                    format!("record #{index} at offset {offset}: no end of header within {MAX_HEADER} bytes"),
                )?;
                return Ok(Step::Continue);
            }
            if !stream.fill_more().map_err(at(here))? {
                let looks_like_record = stream.avail().starts_with(b"WARC/");
                self.index += 1;
                let have = stream.avail().len();
                stream.consume(have);
                sink.reject(
                    offset,
                    Some(index),
                    if looks_like_record {
                        RejectReason::TruncatedRecord
                    } else {
                        RejectReason::Garbage
                    },
                    format!(
                        "record #{index} at offset {offset}: the input ends inside the header ({have} bytes)"
                    ),
                )?;
                return Ok(Step::End);
            }
        };
        let header = match parse_warc_header(&stream.avail()[..header_len]) {
            Ok(h) => h,
            Err(why) => {
                self.index += 1;
                self.resync = true;
                stream.consume(1);
                sink.reject(
                    offset,
                    Some(index),
                    RejectReason::MalformedHeader,
                    format!("record #{index} at offset {offset}: {why}"),
                )?;
                return Ok(Step::Continue);
            }
        };
        self.index += 1;
        let block_len = header.content_length.unwrap_or(0);
        if block_len > self.opts.max_record_bytes {
            sink.reject(
                offset,
                Some(index),
                RejectReason::OversizedRecord,
                format!(
                    "record #{index} at offset {offset}: block of {block_len} bytes exceeds max_record_bytes = {}",
                    self.opts.max_record_bytes
                ),
            )?;
            let skipped = stream
                .skip(header_len as u64 + block_len)
                .map_err(at(here))?;
            if skipped < header_len as u64 + block_len {
                return Ok(Step::End);
            }
            return Ok(Step::Continue);
        }
        let total = header_len + block_len as usize;
        if !stream.ensure(total).map_err(at(here))? {
            let have = stream.avail().len() - header_len;
            stream.consume(stream.avail().len());
            sink.reject(
                offset,
                Some(index),
                RejectReason::TruncatedRecord,
                format!(
                    "record #{index} at offset {offset}: Content-Length is {block_len} but the input ends after {have} bytes of the block"
                ),
            )?;
            return Ok(Step::End);
        }
        let warc_type = header
            .warc_type
            .map(|t| t.to_ascii_lowercase())
            .unwrap_or_else(|| "unknown".to_string());
        if stream.src.spans_members(start, start + total as u64) {
            sink.note("records_spanning_gzip_members");
        }
        if self.opts.keep_types.contains(&warc_type) {
            let rec = RawRecord {
                index,
                offset,
                container: Container::Warc,
                warc_type,
                record_id: header.record_id,
                target_uri: header
                    .target_uri
                    .map(|u| u.trim_start_matches('<').trim_end_matches('>').to_string()),
                date: header.date,
                content_type: header.content_type,
                block: &stream.avail()[header_len..total],
                chunk: Some(stream.chunk()),
            };
            sink.record(&rec)?;
        } else {
            sink.skipped(&warc_type);
        }
        stream.consume(total);
        Ok(Step::Continue)
    }

    fn arc_step<R: Read, S: RecordSink>(
        &mut self,
        stream: &mut DecodedStream<R>,
        sink: &mut S,
    ) -> Result<Step, StepError> {
        if !self.skip_blank(stream).map_err(at(None))? {
            return Ok(Step::End);
        }
        let start = stream.offset();
        let offset = stream.src.locate(start);
        stream.src.forget_before(start);
        let index = self.index;
        let here = Some((offset, index));
        let line_end = loop {
            if let Some(nl) = memchr::memchr(b'\n', stream.avail()) {
                break nl;
            }
            if stream.avail().len() > MAX_HEADER || !stream.fill_more().map_err(at(here))? {
                self.index += 1;
                let have = stream.avail().len();
                stream.consume(have);
                sink.reject(
                    offset,
                    Some(index),
                    RejectReason::MalformedHeader,
                    format!("ARC record #{index} at offset {offset}: header line not terminated"),
                )?;
                return Ok(Step::End);
            }
        };
        let line = String::from_utf8_lossy(&stream.avail()[..line_end]).into_owned();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let length = fields.last().and_then(|l| l.parse::<u64>().ok());
        self.index += 1;
        let (Some(length), true) = (length, fields.len() >= 5) else {
            // ARC has no sync marker: the rest of the shard cannot be framed.
            let have = stream.avail().len();
            stream.consume(have);
            let rest = stream.skip(u64::MAX).map_err(at(None))?;
            sink.reject(
                offset,
                Some(index),
                RejectReason::MalformedHeader,
                format!(
                    "ARC record #{index} at offset {offset}: bad header line {:?}; {} bytes after it not read",
                    &line[..line.len().min(80)],
                    have as u64 + rest - line_end as u64
                ),
            )?;
            return Ok(Step::End);
        };
        if length > self.opts.max_record_bytes {
            sink.reject(
                offset,
                Some(index),
                RejectReason::OversizedRecord,
                format!(
                    "ARC record #{index} at offset {offset}: {length} bytes exceeds max_record_bytes = {}",
                    self.opts.max_record_bytes
                ),
            )?;
            stream
                .skip(line_end as u64 + 1 + length)
                .map_err(at(here))?;
            return Ok(Step::Continue);
        }
        let total = line_end + 1 + length as usize;
        if !stream.ensure(total).map_err(at(here))? {
            let have = stream.avail().len();
            stream.consume(have);
            sink.reject(
                offset,
                Some(index),
                RejectReason::TruncatedRecord,
                format!("ARC record #{index} at offset {offset}: length is {length} but the input ends first"),
            )?;
            return Ok(Step::End);
        }
        if fields[0].starts_with("filedesc:") {
            sink.skipped("arc_header");
        } else if self.opts.keep_types.iter().any(|t| t == "response") {
            let rec = RawRecord {
                index,
                offset,
                container: Container::Arc,
                warc_type: "response".into(),
                record_id: None,
                target_uri: Some(fields[0].to_string()),
                date: Some(fields[2].to_string()),
                content_type: Some(fields[3].to_string()),
                block: &stream.avail()[line_end + 1..total],
                chunk: Some(stream.chunk()),
            };
            sink.record(&rec)?;
        } else {
            sink.skipped("response");
        }
        stream.consume(total);
        Ok(Step::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::source::ByteSource;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Collect {
        records: Vec<(u64, u64, String, Vec<u8>)>,
        rejects: Vec<(u64, Option<u64>, RejectReason)>,
        skipped: BTreeMap<String, u64>,
    }

    impl RecordSink for Collect {
        fn record(&mut self, r: &RawRecord<'_>) -> Result<(), Stop> {
            self.records
                .push((r.index, r.offset, r.warc_type.clone(), r.block.to_vec()));
            Ok(())
        }
        fn reject(
            &mut self,
            offset: u64,
            index: Option<u64>,
            reason: RejectReason,
            _: String,
        ) -> Result<(), Stop> {
            self.rejects.push((offset, index, reason));
            Ok(())
        }
        fn skipped(&mut self, t: &str) {
            *self.skipped.entry(t.to_string()).or_default() += 1;
        }
        fn note(&mut self, _: &str) {}
    }

    fn read(data: &[u8]) -> Collect {
        let opts = WarcReadOptions {
            max_record_bytes: 1000,
            keep_types: vec!["response".into(), "resource".into()],
        };
        let mut stream = DecodedStream::new(ByteSource::new(data).unwrap());
        let mut sink = Collect::default();
        read_records(&mut stream, &opts, &mut sink).unwrap();
        sink
    }

    fn record(t: &str, body: &str) -> String {
        format!(
            "WARC/1.1\r\nWARC-Type: {t}\r\nWARC-Record-ID: <urn:x>\r\nContent-Length: {}\r\n\r\n{body}\r\n\r\n",
            body.len()
        )
    }

    #[test]
    fn reads_and_skips_by_type() {
        let file = [
            record("warcinfo", "a: b"),
            record("resource", "hello"),
            record("request", "GET /"),
        ]
        .concat();
        let got = read(file.as_bytes());
        assert_eq!(got.records.len(), 1);
        assert_eq!(got.records[0].0, 1);
        assert_eq!(got.records[0].3, b"hello");
        assert_eq!(got.skipped["warcinfo"], 1);
        assert_eq!(got.skipped["request"], 1);
        assert!(got.rejects.is_empty());
    }

    #[test]
    fn malformed_header_is_rejected_and_reading_resumes() {
        let bad = "WARC/1.0\r\nWARC-Type: resource\r\nContent-Length: twelve\r\n\r\nbody\r\n\r\n";
        let file = [
            record("resource", "one"),
            bad.to_string(),
            record("resource", "three"),
        ]
        .concat();
        let got = read(file.as_bytes());
        assert_eq!(got.records.len(), 2);
        assert_eq!(got.records[1].0, 2);
        assert_eq!(got.rejects.len(), 1);
        assert_eq!(got.rejects[0].2, RejectReason::MalformedHeader);
        assert_eq!(got.rejects[0].0, record("resource", "one").len() as u64);
    }

    #[test]
    fn oversized_and_truncated_records_are_rejected() {
        let big = "x".repeat(2000);
        let file = [record("resource", &big), record("resource", "ok")].concat();
        let got = read(file.as_bytes());
        assert_eq!(got.records.len(), 1);
        assert_eq!(got.rejects[0].2, RejectReason::OversizedRecord);
        let file = record("resource", "complete") + &record("resource", "cut off here")[..70];
        let got = read(file.as_bytes());
        assert_eq!(got.records.len(), 1);
        assert_eq!(got.rejects[0].2, RejectReason::TruncatedRecord);
        assert_eq!(got.rejects[0].1, Some(1));
    }

    #[test]
    fn leading_garbage_is_rejected() {
        let file = format!("not a warc file\r\n{}", record("resource", "fine"));
        let got = read(file.as_bytes());
        assert_eq!(got.records.len(), 1);
        assert_eq!(got.records[0].0, 0, "garbage is not a record");
        assert_eq!(got.rejects.len(), 1);
        assert_eq!(got.rejects[0].2, RejectReason::Garbage);
    }
}
