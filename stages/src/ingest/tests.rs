//! Ingest tests on the real WARC/JSONL samples in `tests/data` (and the full shared set in
//! `../shared/data/warc` when it is there).

use super::source::Fill;
use super::*;
use arrow::array::{Array, AsArray};
use harman_schemas::RejectReason;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

/// Counts record types the way warcio does (every record, whatever its type).
#[derive(Default)]
struct TypeCounter {
    counts: BTreeMap<String, u64>,
    rejects: Vec<(u64, Option<u64>, RejectReason, String)>,
    spanning: u64,
}

impl RecordSink for TypeCounter {
    fn record(&mut self, rec: &RawRecord<'_>) -> Result<(), Stop> {
        *self.counts.entry(rec.warc_type.clone()).or_default() += 1;
        Ok(())
    }
    fn reject(&mut self, o: u64, i: Option<u64>, r: RejectReason, d: String) -> Result<(), Stop> {
        self.rejects.push((o, i, r, d));
        Ok(())
    }
    fn skipped(&mut self, t: &str) {
        *self.counts.entry(t.to_string()).or_default() += 1;
    }
    fn note(&mut self, c: &str) {
        if c == "records_spanning_gzip_members" {
            self.spanning += 1;
        }
    }
}

fn count_types(bytes: &[u8]) -> TypeCounter {
    let opts = WarcReadOptions {
        max_record_bytes: 64 << 20,
        keep_types: KNOWN_RECORD_TYPES.map(String::from).to_vec(),
    };
    let mut stream = DecodedStream::new(ByteSource::new(bytes).unwrap());
    let mut sink = TypeCounter::default();
    read_records(&mut stream, &opts, &mut sink).unwrap();
    sink
}

fn read_file(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every good file reads with exactly warcio's record counts and no reject.
#[test]
fn record_counts_match_warcio() {
    let counts =
        std::fs::read_to_string(data_dir().join("warc/warcio_record_counts.jsonl")).unwrap();
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/warc");
    let mut checked = 0;
    for line in counts.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let file = v["file"].as_str().unwrap();
        let error = v["error"].as_str();
        // Files where warcio stopped on an error have incomplete counts (the brotli file's
        // error is a warcio/binding bug; `brotli_file_reads_every_record` covers it).
        if file.starts_with("malformed/") || error.is_some() {
            continue;
        }
        let path = [data_dir().join("warc").join(file), shared.join(file)]
            .into_iter()
            .find(|p| p.exists());
        let Some(path) = path else { continue };
        let got = count_types(&read_file(&path));
        let want: BTreeMap<String, u64> = serde_json::from_value(v["counts"].clone()).unwrap();
        assert_eq!(got.counts, want, "{file}");
        assert!(got.rejects.is_empty(), "{file}: {:?}", got.rejects);
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} files checked");
}

#[test]
fn brotli_file_reads_every_record() {
    let got = count_types(&read_file(
        &data_dir().join("warc/edge_cases/transfer_compression_brotli.warc.gz"),
    ));
    let want: BTreeMap<String, u64> = ["warcinfo", "request", "response", "metadata", "resource"]
        .iter()
        .map(|t| (t.to_string(), 1))
        .collect();
    assert_eq!(got.counts, want);
}

fn malformed(name: &str) -> TypeCounter {
    count_types(&read_file(&data_dir().join("warc/malformed").join(name)))
}

#[test]
fn clipped_gzip_is_a_located_truncation() {
    let got = malformed("clipped.warc.gz");
    assert!(got.counts.is_empty(), "{:?}", got.counts);
    assert_eq!(got.rejects.len(), 1);
    let (offset, index, reason, detail) = &got.rejects[0];
    assert_eq!(
        (*offset, *index, *reason),
        (0, Some(0), RejectReason::TruncatedRecord)
    );
    assert!(detail.contains("offset 0"), "{detail}");
}

#[test]
fn corrupt_deflate_stream_is_rejected() {
    let got = malformed("double-single-inflate-error.gz");
    assert!(got.counts.is_empty());
    assert_eq!(got.rejects.len(), 1, "{:?}", got.rejects);
    assert_eq!(got.rejects[0].2, RejectReason::CorruptGzip);
    assert!(
        got.rejects[0].3.contains("deflate error"),
        "{}",
        got.rejects[0].3
    );
}

#[test]
fn whole_file_gzip_reads_like_the_uncompressed_file() {
    for name in ["example-bad-non-chunked.warc.gz", "example-bad.warc.gz.bad"] {
        let bytes = read_file(&data_dir().join("warc/malformed").join(name));
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
            &mut plain,
        )
        .unwrap();
        let want = count_types(&plain);
        let got = malformed(name);
        assert!(
            got.counts.values().sum::<u64>() >= 4,
            "{name}: {:?}",
            got.counts
        );
        assert_eq!(got.counts, want.counts, "{name}");
        assert!(got.rejects.is_empty(), "{name}: {:?}", got.rejects);
    }
}

/// A record whose Content-Length stops 2 bytes short of its block: the 2 stray bytes are
/// reported where they are, every record is still read (warcio's counts).
#[test]
fn stray_bytes_between_records_are_located() {
    let got = malformed("example-trunc.warc");
    let want = BTreeMap::from([
        ("warcinfo".to_string(), 2),
        ("response".into(), 1),
        ("request".into(), 1),
    ]);
    assert_eq!(got.counts, want);
    assert_eq!(got.rejects.len(), 1, "{:?}", got.rejects);
    assert_eq!(got.rejects[0].2, RejectReason::Garbage);
    assert_eq!(got.rejects[0].0, 2560);
    assert_eq!(got.rejects[0].1, None);
}

#[test]
fn misaligned_gzip_members_still_frame_records() {
    let got = malformed("example-wrong-chunks.warc.gz");
    assert_eq!(got.counts.get("response"), Some(&1));
    assert_eq!(got.counts.get("request"), Some(&1));
    assert!(got.rejects.is_empty());
    assert_eq!(
        got.spanning, 1,
        "the response's header and body are in different members"
    );
}

/// Damage one gzip member of a real Common Crawl file: that record is rejected at the
/// member's offset, every other record is still read.
#[test]
fn damaged_member_loses_only_its_record() {
    let path = data_dir()
        .join("warc/commoncrawl/CC-MAIN-20200808165417-20200808195417-00395.excerpt.warc.gz");
    let mut bytes = read_file(&path);
    let clean = count_types(&bytes);
    let total: u64 = clean.counts.values().sum();
    // Member offsets: decode the file member by member.
    let mut offsets = Vec::new();
    let mut src = ByteSource::new(&bytes[..]).unwrap();
    let mut space = vec![0u8; 1 << 16];
    loop {
        match src.fill(&mut space).unwrap() {
            Fill::End => break,
            Fill::NeedSpace(n) => {
                space.resize(n, 0);
                continue;
            }
            Fill::Wrote(_) => {}
        }
        if offsets.last() != Some(&src.locate(src.decoded() - 1)) {
            offsets.push(src.locate(src.decoded() - 1));
        }
    }
    assert_eq!(offsets.len() as u64, total);
    let victim = offsets[5] as usize;
    let next = offsets[6] as usize;
    for b in &mut bytes[victim + 20..(victim + next) / 2] {
        *b = !*b;
    }
    let got = count_types(&bytes);
    assert_eq!(got.counts.values().sum::<u64>(), total - 1);
    assert_eq!(got.rejects.len(), 1, "{:?}", got.rejects);
    assert_eq!(got.rejects[0].0, victim as u64);
    assert_eq!(got.rejects[0].1, Some(5));
    assert_eq!(got.rejects[0].2, RejectReason::CorruptGzip);
}

fn ingest(
    bytes: &[u8],
    format: InputFormat,
    opts: &IngestOptions,
) -> (Vec<RecordBatch>, ReportData) {
    let mut batches = Vec::new();
    let mut emit = |b: RecordBatch| {
        batches.push(b);
        Ok(())
    };
    let data = read_stream(bytes, "file:///shard", format, opts, &mut emit).unwrap();
    (batches, data)
}

#[test]
fn warc_documents_carry_http_fields_and_valid_schema() {
    let path = data_dir()
        .join("warc/commoncrawl/CC-MAIN-20200808165417-20200808195417-00395.excerpt.warc.gz");
    let bytes = read_file(&path);
    let opts = IngestOptions::with_inputs(vec!["x".into()]);
    let (batches, data) = ingest(&bytes, InputFormat::Warc, &opts);
    let schema = harman_schemas::documents_schema();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 16 + 16, "16 responses + 16 metadata");
    assert_eq!(data.counters["documents"], 32);
    assert_eq!(data.counters["skipped.request"], 17);
    assert_eq!(data.counters["skipped.warcinfo"], 1);
    assert_eq!(data.counters["records_read"], 1 + 17 + 16 + 16);
    assert_eq!(data.input_sha256.as_deref().map(str::len), Some(64));
    let b = &batches[0];
    harman_schemas::validate_batch(b, &schema).unwrap();
    let types = b.column_by_name("record_type").unwrap().as_string::<i32>();
    let status = b
        .column_by_name("http_status")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt16Type>();
    let payload = b.column_by_name("payload").unwrap().as_binary_view();
    let ctype = b.column_by_name("content_type").unwrap().as_string::<i32>();
    let first_response = (0..b.num_rows())
        .find(|&i| types.value(i) == "response")
        .unwrap();
    assert_eq!(status.value(first_response), 200);
    assert_eq!(ctype.value(first_response), "text/html");
    let body = payload.value(first_response);
    assert!(!body.starts_with(b"HTTP/"), "HTTP headers must be stripped");
    assert!(body.windows(5).any(|w| w.eq_ignore_ascii_case(b"<html")));
    let ids = b.column_by_name("id").unwrap().as_string::<i32>();
    let index = b
        .column_by_name("source_index")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt64Type>();
    assert_eq!(ids.value(0), document_id("file:///shard", index.value(0)));
}

#[test]
fn wet_conversion_records_become_text() {
    let bytes = read_file(&data_dir().join("warc/commoncrawl/whirlwind.warc.wet.gz"));
    let opts = IngestOptions::with_inputs(vec!["x".into()]);
    let (batches, _) = ingest(&bytes, InputFormat::Warc, &opts);
    let b = &batches[0];
    assert_eq!(b.num_rows(), 1);
    let text = b.column_by_name("text").unwrap().as_string_view();
    assert!(text.value(0).contains("Escopete"));
    assert!(b.column_by_name("payload").unwrap().is_null(0));
}

#[test]
fn chunked_and_brotli_payloads_are_decoded() {
    for (file, needle) in [
        ("edge_cases/example-iana.org-chunked.warc", &b"</html>"[..]),
        ("edge_cases/transfer_compression_brotli.warc.gz", b"<html"),
        ("edge_cases/transfer_compression_gzip.warc.gz", b"<html"),
    ] {
        let bytes = read_file(&data_dir().join("warc").join(file));
        let opts = IngestOptions::with_inputs(vec!["x".into()]);
        let (batches, data) = ingest(&bytes, InputFormat::Warc, &opts);
        let b = &batches[0];
        let types = b.column_by_name("record_type").unwrap().as_string::<i32>();
        let payload = b.column_by_name("payload").unwrap().as_binary_view();
        let i = (0..b.num_rows())
            .find(|&i| types.value(i) == "response")
            .unwrap();
        let body = payload.value(i);
        assert!(
            body.windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle)),
            "{file}: {:?} {:?}",
            String::from_utf8_lossy(&body[..body.len().min(80)]),
            data.counters
        );
        assert!(
            !data
                .counters
                .keys()
                .any(|k| k.starts_with("http_not_decoded")),
            "{file}"
        );
    }
}

#[test]
fn pile_shard_keeps_text_and_metadata() {
    let bytes = read_file(&data_dir().join("text/pile_style/shard-00.jsonl.zst"));
    let mut opts = IngestOptions::with_inputs(vec!["x".into()]);
    opts.meta_fields = vec!["meta.pile_set_name".into()];
    let (batches, data) = ingest(&bytes, InputFormat::Jsonl, &opts);
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 139);
    assert_eq!(data.rejected(), 0);
    let meta = batches[0]
        .column_by_name("meta")
        .unwrap()
        .as_string::<i32>();
    let v: serde_json::Value = serde_json::from_str(meta.value(0)).unwrap();
    assert!(v["meta.pile_set_name"].is_string(), "{v}");
    let index = batches[0]
        .column_by_name("source_index")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt64Type>();
    assert_eq!(index.value(0), 1, "JSONL lines are numbered from 1");
}

#[test]
fn cc_net_gzip_jsonl_with_id_and_url_fields() {
    let bytes = read_file(&data_dir().join("text/cc_net/cc_en_head-0091.jsonl.gz"));
    let mut opts = IngestOptions::with_inputs(vec!["x".into()]);
    opts.id_field = Some("id".into());
    opts.url_field = Some("metadata.url".into());
    let (batches, _) = ingest(&bytes, InputFormat::Jsonl, &opts);
    let b = &batches[0];
    assert_eq!(b.num_rows(), 10);
    let ids = b
        .column_by_name("warc_record_id")
        .unwrap()
        .as_string::<i32>();
    assert!(ids.value(0).starts_with("http"));
    assert_eq!(b.column_by_name("url").unwrap().null_count(), 0);
}

/// Real Pile lines with bad lines planted between them: each bad line is rejected with its
/// line number and offset, every good line is kept.
#[test]
fn bad_jsonl_lines_are_rejected_with_location() {
    let bytes = read_file(&data_dir().join("text/pile_style/shard-00.jsonl.zst"));
    let text = zstd::decode_all(&bytes[..]).unwrap();
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && l.len() < 100_000)
        .take(20)
        .collect();
    assert_eq!(lines.len(), 20);
    let mut file = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        file.extend_from_slice(line);
        file.push(b'\n');
        match i {
            2 => file.extend_from_slice(b"{\"text\": \"caf\xe9\"}\n"),
            5 => file.extend_from_slice(b"{\"text\": \"unterminated\n"),
            7 => file.extend_from_slice(b"{\"meta\": {}}\n"),
            9 => file.extend_from_slice(&[b'x'; 200_000]),
            _ => continue,
        }
        if i == 9 {
            file.push(b'\n');
        }
    }
    let mut opts = IngestOptions::with_inputs(vec!["x".into()]);
    opts.max_record_bytes = 150_000;
    let (batches, data) = ingest(&file, InputFormat::Jsonl, &opts);
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 20, "{:?}", data.rejects);
    assert_eq!(data.counters["rejected.invalid_utf8"], 1);
    assert_eq!(
        data.counters["rejected.invalid_json"], 1,
        "{:?}",
        data.rejects
    );
    assert_eq!(data.counters["rejected.missing_field"], 1);
    assert_eq!(data.counters["rejected.oversized_record"], 1);
    let utf8 = data
        .rejects
        .iter()
        .find(|r| r.reason == RejectReason::InvalidUtf8)
        .unwrap();
    assert_eq!(utf8.index, Some(4));
    let offset: usize = lines[..3].iter().map(|l| l.len() + 1).sum();
    assert_eq!(utf8.offset, offset as u64);
}

/// Damage a real Common Crawl file at many pseudo-random places: reading never fails or
/// panics, never yields more records than the file holds, and every record lost is
/// accounted for by a reject.
#[test]
fn random_damage_never_loses_records_silently() {
    let path = data_dir()
        .join("warc/commoncrawl/CC-MAIN-20200808165417-20200808195417-00395.excerpt.warc.gz");
    let clean = read_file(&path);
    let total: u64 = count_types(&clean).counts.values().sum();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..60 {
        let mut bytes = clean.clone();
        let at = (next() % bytes.len() as u64) as usize;
        let len = 1 + (next() % 64) as usize;
        for b in &mut bytes[at..(at + len).min(clean.len())] {
            *b = next() as u8;
        }
        if next() % 4 == 0 {
            bytes.truncate(at);
        }
        let got = count_types(&bytes);
        let read: u64 = got.counts.values().sum();
        assert!(read <= total, "damage at {at}: {read} > {total}");
        if read < total {
            assert!(
                !got.rejects.is_empty(),
                "damage at {at}+{len}: records lost without a reject"
            );
        }
        for (offset, _, _, detail) in &got.rejects {
            assert!(*offset <= clean.len() as u64, "{detail}");
        }
    }
}

/// A WARC of `resource` records with the given payloads, one gzip member per record (or
/// uncompressed).
fn warc_of(payloads: &[Vec<u8>], gzip: bool) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let mut rec = format!(
            "WARC/1.0\r\nWARC-Type: resource\r\nWARC-Record-ID: <urn:uuid:{i:08}>\r\nWARC-Target-URI: http://example.com/{i}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n",
            p.len()
        )
        .into_bytes();
        rec.extend_from_slice(p);
        rec.extend_from_slice(b"\r\n\r\n");
        if gzip {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&rec).unwrap();
            out.extend_from_slice(&e.finish().unwrap());
        } else {
            out.extend_from_slice(&rec);
        }
    }
    out
}

/// Payloads cut from real pages, of varied sizes, with one larger than a decode chunk.
fn varied_payloads() -> Vec<Vec<u8>> {
    let path = data_dir()
        .join("warc/commoncrawl/CC-MAIN-20200808165417-20200808195417-00395.excerpt.warc.gz");
    use std::io::Read as _;
    let mut pool = Vec::new();
    flate2::read::MultiGzDecoder::new(&read_file(&path)[..])
        .read_to_end(&mut pool)
        .unwrap();
    let sizes = (0..400u64).map(|i| match i {
        137 => super::chunk::CHUNK_BYTES + 3_000_000,
        _ => (i * i * 7919 % 90_000) as usize + (i % 13) as usize,
    });
    sizes
        .enumerate()
        .map(|(i, n)| {
            let start = i * 7919 % pool.len();
            pool.iter().cycle().skip(start).take(n).copied().collect()
        })
        .collect()
}

/// Payloads are handed to batches by reference into the decode chunks: every value must
/// come back exactly, whether the batches are kept (chunks pile up) or dropped at once
/// (chunks are reused), across chunk boundaries and for a record larger than a chunk.
#[test]
fn payloads_survive_chunk_turnover() {
    let payloads = varied_payloads();
    let opts = IngestOptions {
        batch_bytes: 1 << 20,
        ..IngestOptions::with_inputs(vec!["x".into()])
    };
    for gzip in [true, false] {
        let file = warc_of(&payloads, gzip);
        // Kept: all batches alive at the end.
        let (batches, data) = ingest(&file, InputFormat::Warc, &opts);
        assert_eq!(data.rejected(), 0);
        let got: Vec<Vec<u8>> = batches
            .iter()
            .flat_map(|b| {
                let col = b
                    .column_by_name("payload")
                    .unwrap()
                    .as_binary_view()
                    .clone();
                (0..col.len()).map(move |i| col.value(i).to_vec())
            })
            .collect();
        assert_eq!(got.len(), payloads.len());
        for (i, (g, p)) in got.iter().zip(&payloads).enumerate() {
            assert!(
                g == p,
                "gzip={gzip} payload {i} differs ({} vs {} bytes)",
                g.len(),
                p.len()
            );
        }
        // Dropped: each batch checked and released before the next is read.
        let mut next = 0usize;
        let mut emit = |b: RecordBatch| {
            let col = b.column_by_name("payload").unwrap().as_binary_view();
            for i in 0..col.len() {
                assert!(col.value(i) == payloads[next].as_slice(), "payload {next}");
                next += 1;
            }
            Ok(())
        };
        read_stream(
            &file[..],
            "file:///shard",
            InputFormat::Warc,
            &opts,
            &mut emit,
        )
        .unwrap();
        assert_eq!(next, payloads.len());
    }
}
