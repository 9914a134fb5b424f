//! The `text` table: the main text extracted from each document, one row per `documents`
//! row and in the same order (documents without text keep their row, with a status saying
//! why), so the two tables line up by position as well as by `id`.

use crate::with_table_metadata;
use arrow::datatypes::{DataType, Field, Schema};

pub const TEXT_TABLE: &str = "text";
/// Version 1: first release.
pub const TEXT_VERSION: u32 = 1;

/// Columns of `text` v1.
///
/// | column | meaning |
/// |---|---|
/// | `id` | the document's id (as in `documents`) |
/// | `url` | the document's URL (as in `documents`) |
/// | `status` | `ok`, `truncated` (text from a page cut at a size/depth limit), `passthrough` (already text: WET, JSONL), `empty`, `too_short`, `binary`, `unsupported` (not an HTML/text content type), `no_content` |
/// | `reason` | why, for statuses other than `ok`/`passthrough` |
/// | `text` | the extracted main text, one block per line; null when the status carries none |
/// | `title` | `<title>` (else `og:title`, else the first `<h1>`) |
/// | `lang` | the page's `<html lang>` as written (a hint, not a detection) |
/// | `charset` | the charset used and where it came from, e.g. `windows-1252 (meta)` |
/// | `bytes_in` | bytes of the payload (or text) read |
/// | `bytes_out` | UTF-8 bytes of `text` |
pub fn text_schema() -> Schema {
    with_table_metadata(
        vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("url", DataType::Utf8, true),
            Field::new("status", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, true),
            Field::new("text", DataType::Utf8, true),
            Field::new("title", DataType::Utf8, true),
            Field::new("lang", DataType::Utf8, true),
            Field::new("charset", DataType::Utf8, true),
            Field::new("bytes_in", DataType::UInt64, false),
            Field::new("bytes_out", DataType::UInt64, false),
        ],
        TEXT_TABLE,
        TEXT_VERSION,
    )
}
