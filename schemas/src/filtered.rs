//! The `filtered` table: every `text` row with its annotations (Dolma-style attribute
//! columns: language, quality rule flags, bad-word counts, toxicity score, PII counts) and the
//! keep decision of the filter stage's predicate. Dropped rows stay in the table with the
//! reason, so a different predicate can be applied later without recomputing anything.

use crate::with_table_metadata;
use arrow::datatypes::{DataType, Field, Schema};
use harman_filters::quality::{FAMILIES, RULES};

pub const FILTERED_TABLE: &str = "filtered";
/// Version 1: first release.
pub const FILTERED_VERSION: u32 = 1;

/// Columns of `filtered` v1, in order.
///
/// | column | meaning |
/// |---|---|
/// | `id`, `url`, `status`, `title` | as in `text` |
/// | `text` | the text with e-mail addresses, IP addresses and phone numbers replaced by `<EMAIL>`, `<IP_ADDRESS>`, `<PHONE_NUMBER>` (null when `text` had none) |
/// | `lang` | detected language: ISO 639-1 code where one exists (`en`, `tr`), else ISO 639-3; null without letters |
/// | `lang_score` | the detector's confidence in [0, 1] (0 when `lang` is null) |
/// | `words`, `mean_word_len` | word count and mean word length in characters |
/// | one column per quality rule (`gopher_word_count` … `fineweb_list_ratio`) | true = the document fails the rule |
/// | `gopher_drop`, `c4_drop`, `fineweb_drop` | the document fails at least one rule of the family |
/// | `c4_line_frac` | fraction of lines C4's line rules would keep |
/// | `badwords` | LDNOOBW matches (the list of `lang` plus English) |
/// | `badword_frac` | `badwords` per word |
/// | `toxicity` | the toxicity classifier's score in [0, 1]; null when `lang` is not a language the model was trained for |
/// | `pii_emails`, `pii_ips`, `pii_phones` | placeholders inserted |
/// | `keep` | the keep-predicate's verdict |
/// | `drop_reason` | the first conjunct of the predicate the row fails, as SQL; null when kept |
pub fn filtered_schema() -> Schema {
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, true),
    ];
    fields.extend(annotation_fields());
    fields.push(Field::new("keep", DataType::Boolean, false));
    fields.push(Field::new("drop_reason", DataType::Utf8, true));
    with_table_metadata(fields, FILTERED_TABLE, FILTERED_VERSION)
}

/// The columns the annotation computes, from `text` to `pii_phones`.
pub fn annotation_fields() -> Vec<Field> {
    let mut fields = vec![
        Field::new("text", DataType::Utf8, true),
        Field::new("lang", DataType::Utf8, true),
        Field::new("lang_score", DataType::Float64, false),
        Field::new("words", DataType::UInt32, false),
        Field::new("mean_word_len", DataType::Float64, false),
    ];
    fields.extend(
        RULES
            .iter()
            .map(|r| Field::new(*r, DataType::Boolean, false)),
    );
    for family in FAMILIES {
        fields.push(Field::new(
            format!("{family}_drop"),
            DataType::Boolean,
            false,
        ));
    }
    fields.push(Field::new("c4_line_frac", DataType::Float64, false));
    fields.push(Field::new("badwords", DataType::UInt32, false));
    fields.push(Field::new("badword_frac", DataType::Float64, false));
    fields.push(Field::new("toxicity", DataType::Float64, true));
    for f in ["pii_emails", "pii_ips", "pii_phones"] {
        fields.push(Field::new(f, DataType::UInt32, false));
    }
    fields
}
