//! Building `documents` record batches, and the sink every reader (WARC, JSONL, Parquet)
//! writes into: it assigns ids, turns records into rows or rejects, tallies counters and
//! hands full batches on.

use super::chunk::{ChunkMem, TextViewBuilder, ViewColumnBuilder};
use super::http::{parse_response, split_content_type, HttpError};
use super::warc::{Container, RawRecord, RecordSink, Stop};
use crate::report::{RejectRow, ReportData};
use arrow::array::{ArrayRef, StringBuilder, UInt16Builder, UInt64Builder};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use harman_schemas::RejectReason;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The stable id of a document: sha256(source_url ‖ 0x00 ‖ decimal source_index), first 16
/// bytes as hex. Same input URL and position ⇒ same id, on every rerun and machine.
pub fn document_id(source_url: &str, index: u64) -> String {
    let mut h = Sha256::new();
    h.update(source_url.as_bytes());
    h.update([0u8]);
    h.update(index.to_string().as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// One row of `documents`, borrowing its values.
#[derive(Debug, Default, Clone, Copy)]
pub struct DocRow<'a> {
    pub offset: u64,
    pub index: u64,
    pub record_type: Option<&'a str>,
    pub record_id: Option<&'a str>,
    pub url: Option<&'a str>,
    pub date: Option<&'a str>,
    pub http_status: Option<u16>,
    pub content_type: Option<&'a str>,
    pub charset: Option<&'a str>,
    pub payload: Option<&'a [u8]>,
    pub text: Option<&'a str>,
    pub meta: Option<&'a str>,
    /// The decode chunk `payload`/`text` may lie in; such values are referenced, not copied.
    pub chunk: Option<&'a Arc<ChunkMem>>,
}

/// Column builders for `documents`.
pub struct DocumentBatchBuilder {
    schema: SchemaRef,
    source_url: String,
    source_format: &'static str,
    id: StringBuilder,
    src: StringBuilder,
    offset: UInt64Builder,
    index: UInt64Builder,
    format: StringBuilder,
    record_type: StringBuilder,
    record_id: StringBuilder,
    url: StringBuilder,
    date: StringBuilder,
    status: UInt16Builder,
    content_type: StringBuilder,
    charset: StringBuilder,
    payload: ViewColumnBuilder,
    text: TextViewBuilder,
    meta: StringBuilder,
    rows: usize,
    bytes: usize,
    record_ids: bool,
}

impl DocumentBatchBuilder {
    pub fn new(schema: SchemaRef, source_url: &str, source_format: &'static str) -> Self {
        DocumentBatchBuilder {
            schema,
            source_url: source_url.to_string(),
            source_format,
            id: StringBuilder::new(),
            src: StringBuilder::new(),
            offset: UInt64Builder::new(),
            index: UInt64Builder::new(),
            format: StringBuilder::new(),
            record_type: StringBuilder::new(),
            record_id: StringBuilder::new(),
            url: StringBuilder::new(),
            date: StringBuilder::new(),
            status: UInt16Builder::new(),
            content_type: StringBuilder::new(),
            charset: StringBuilder::new(),
            payload: ViewColumnBuilder::default(),
            text: TextViewBuilder::default(),
            meta: StringBuilder::new(),
            rows: 0,
            bytes: 0,
            record_ids: false,
        }
    }

    /// Use each record's id (`record_id`, from `id_field`) as its `id` where it has one.
    pub fn with_record_ids(mut self, yes: bool) -> Self {
        self.record_ids = yes;
        self
    }

    pub fn set_source_format(&mut self, format: &'static str) {
        self.source_format = format;
    }

    pub fn append(&mut self, row: &DocRow<'_>) {
        match row.record_id.filter(|_| self.record_ids) {
            Some(id) => self.id.append_value(id),
            None => self
                .id
                .append_value(document_id(&self.source_url, row.index)),
        }
        self.src.append_value(&self.source_url);
        self.offset.append_value(row.offset);
        self.index.append_value(row.index);
        self.format.append_value(self.source_format);
        self.record_type.append_option(row.record_type);
        self.record_id.append_option(row.record_id);
        self.url.append_option(row.url);
        self.date.append_option(row.date);
        self.status.append_option(row.http_status);
        self.content_type.append_option(row.content_type);
        self.charset.append_option(row.charset);
        self.payload.append(row.payload, row.chunk);
        self.text.append(row.text, row.chunk);
        self.meta.append_option(row.meta);
        self.rows += 1;
        self.bytes += row.payload.map_or(0, |p| p.len())
            + row.text.map_or(0, |t| t.len())
            + row.meta.map_or(0, |m| m.len())
            + 128;
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Take the rows so far as a batch.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.src.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.index.finish()),
            Arc::new(self.format.finish()),
            Arc::new(self.record_type.finish()),
            Arc::new(self.record_id.finish()),
            Arc::new(self.url.finish()),
            Arc::new(self.date.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.content_type.finish()),
            Arc::new(self.charset.finish()),
            self.payload.finish_binary(),
            self.text.finish(),
            Arc::new(self.meta.finish()),
        ];
        self.rows = 0;
        self.bytes = 0;
        // The builders produce exactly the schema's columns; a mismatch is a bug here.
        RecordBatch::try_new(self.schema.clone(), columns)
            .expect("documents builder columns match the documents schema")
    }
}

/// Limits and switches the sink applies to records.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub max_record_bytes: u64,
    pub decode_http: bool,
    pub batch_rows: usize,
    pub batch_bytes: usize,
}

/// Where readers put documents and rejects.
pub struct DocumentSink<'e> {
    pub builder: DocumentBatchBuilder,
    pub data: ReportData,
    opts: SinkOptions,
    emit: &'e mut dyn FnMut(RecordBatch) -> Result<(), Stop>,
}

impl<'e> DocumentSink<'e> {
    pub fn new(
        builder: DocumentBatchBuilder,
        opts: SinkOptions,
        emit: &'e mut dyn FnMut(RecordBatch) -> Result<(), Stop>,
    ) -> Self {
        DocumentSink {
            builder,
            data: ReportData::default(),
            opts,
            emit,
        }
    }

    /// Add a document row; emits a batch when the batch is full.
    pub fn push(&mut self, row: &DocRow<'_>) -> Result<(), Stop> {
        self.builder.append(row);
        self.data.add("documents", 1);
        if self.builder.rows() >= self.opts.batch_rows
            || self.builder.bytes() >= self.opts.batch_bytes
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Emit the rows collected so far, if any.
    pub fn flush(&mut self) -> Result<(), Stop> {
        if self.builder.rows() > 0 {
            let batch = self.builder.finish();
            (self.emit)(batch)?;
        }
        Ok(())
    }

    pub fn add_reject(
        &mut self,
        offset: u64,
        index: Option<u64>,
        reason: RejectReason,
        detail: String,
    ) {
        self.data.reject(RejectRow {
            offset,
            index,
            reason,
            detail,
        });
    }

    pub fn count(&mut self, counter: &str) {
        self.data.add(counter, 1);
    }
}

impl RecordSink for DocumentSink<'_> {
    fn record(&mut self, rec: &RawRecord<'_>) -> Result<(), Stop> {
        if rec.container == Container::Arc {
            self.builder.set_source_format("arc");
        }
        let (warc_mime, warc_charset) = rec
            .content_type
            .as_deref()
            .map(split_content_type)
            .unwrap_or((None, None));
        let mut row = DocRow {
            offset: rec.offset,
            index: rec.index,
            record_type: Some(&rec.warc_type),
            record_id: rec.record_id.as_deref(),
            url: rec.target_uri.as_deref(),
            date: rec.date.as_deref(),
            chunk: rec.chunk,
            ..DocRow::default()
        };
        let is_http =
            rec.block.starts_with(b"HTTP/") || warc_mime.as_deref() == Some("application/http");
        match rec.warc_type.as_str() {
            "response" if is_http => {
                match parse_response(rec.block, self.opts.decode_http, self.opts.max_record_bytes) {
                    Ok(http) => {
                        if let Some(what) = http.undecoded {
                            self.data.add(&format!("http_not_decoded.{what}"), 1);
                        }
                        row.http_status = Some(http.status);
                        row.content_type = http.content_type.as_deref();
                        row.charset = http.charset.as_deref();
                        row.payload = Some(&http.body);
                        self.data.add("payload_bytes", http.body.len() as u64);
                        return self.push(&row);
                    }
                    Err(HttpError::Malformed(why)) => {
                        self.add_reject(
                            rec.offset,
                            Some(rec.index),
                            RejectReason::MalformedHttp,
                            format!("record #{} at offset {}: {why}", rec.index, rec.offset),
                        );
                        return Ok(());
                    }
                    Err(HttpError::Oversized(n)) => {
                        self.add_reject(
                            rec.offset,
                            Some(rec.index),
                            RejectReason::OversizedRecord,
                            format!(
                                "record #{} at offset {}: decoded HTTP body of {n}+ bytes exceeds max_record_bytes = {}",
                                rec.index, rec.offset, self.opts.max_record_bytes
                            ),
                        );
                        return Ok(());
                    }
                }
            }
            "conversion" => match std::str::from_utf8(rec.block) {
                Ok(text) => {
                    row.content_type = warc_mime.as_deref();
                    row.charset = warc_charset.as_deref();
                    row.text = Some(text);
                    self.data.add("text_bytes", text.len() as u64);
                }
                Err(e) => {
                    self.add_reject(
                        rec.offset,
                        Some(rec.index),
                        RejectReason::InvalidUtf8,
                        format!(
                            "record #{} at offset {}: conversion text is not UTF-8 (byte {} of the block)",
                            rec.index,
                            rec.offset,
                            e.valid_up_to()
                        ),
                    );
                    return Ok(());
                }
            },
            _ => {
                row.content_type = warc_mime.as_deref();
                row.charset = warc_charset.as_deref();
                row.payload = Some(rec.block);
                self.data.add("payload_bytes", rec.block.len() as u64);
            }
        }
        self.push(&row)
    }

    fn reject(
        &mut self,
        offset: u64,
        index: Option<u64>,
        reason: RejectReason,
        detail: String,
    ) -> Result<(), Stop> {
        self.add_reject(offset, index, reason, detail);
        Ok(())
    }

    fn skipped(&mut self, record_type: &str) {
        self.data.add(&format!("skipped.{record_type}"), 1);
    }

    fn note(&mut self, counter: &str) {
        self.data.add(counter, 1);
    }
}
