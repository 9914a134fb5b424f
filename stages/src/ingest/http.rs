//! HTTP response blocks inside WARC `response` records: status line, headers, and the body
//! with its transfer encoding (chunked) and content encoding (gzip, deflate, br) undone.

use std::borrow::Cow;
use std::io::Read;

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse<'a> {
    pub status: u16,
    /// Media type, lowercased, without parameters.
    pub content_type: Option<String>,
    /// The charset parameter, lowercased.
    pub charset: Option<String>,
    pub body: Cow<'a, [u8]>,
    /// A transfer or content encoding that could not be undone (the raw body is kept).
    pub undecoded: Option<&'static str>,
}

#[derive(Debug, PartialEq)]
pub enum HttpError {
    Malformed(String),
    Oversized(u64),
}

/// Split a Content-Type value into its lowercased media type and charset.
pub fn split_content_type(value: &str) -> (Option<String>, Option<String>) {
    let mut parts = value.split(';');
    let mime = parts
        .next()
        .map(|m| m.trim().to_ascii_lowercase())
        .filter(|m| !m.is_empty());
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| {
                v.trim()
                    .trim_matches(|c| c == '"' || c == '\'')
                    .to_ascii_lowercase()
            })
            .filter(|c| !c.is_empty())
    });
    (mime, charset)
}

/// Parse a response block. Bodies are decoded only when `decode` is set; a decoded body larger
/// than `max_body` is an error.
pub fn parse_response(
    block: &[u8],
    decode: bool,
    max_body: u64,
) -> Result<HttpResponse<'_>, HttpError> {
    let Some(end) = header_end(block) else {
        return Err(HttpError::Malformed(
            "HTTP headers are not terminated by a blank line".into(),
        ));
    };
    let head = &block[..end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    if !status_line.starts_with(b"HTTP/") {
        return Err(HttpError::Malformed(format!(
            "status line {:?} does not start with HTTP/",
            String::from_utf8_lossy(&status_line[..status_line.len().min(40)])
        )));
    }
    let code = status_line
        .split(|&b| b == b' ')
        .filter(|p| !p.is_empty())
        .nth(1)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            HttpError::Malformed(format!(
                "no status code in {:?}",
                String::from_utf8_lossy(&status_line[..status_line.len().min(40)])
            ))
        })?;
    let mut content_type = None;
    let mut chunked = false;
    let mut encoding: Option<String> = None;
    for line in lines {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = &line[..colon];
        let value = String::from_utf8_lossy(&line[colon + 1..])
            .trim()
            .to_string();
        if name.eq_ignore_ascii_case(b"content-type") && content_type.is_none() {
            content_type = Some(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked |= value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case(b"content-encoding") {
            let v = value.to_ascii_lowercase();
            if !v.is_empty() && v != "identity" {
                encoding = Some(v);
            }
        }
    }
    let (mime, charset) = content_type
        .as_deref()
        .map(split_content_type)
        .unwrap_or((None, None));
    let mut body: Cow<'_, [u8]> = Cow::Borrowed(&block[end..]);
    let mut undecoded = None;
    if decode && chunked {
        match dechunk(&body) {
            Some(b) => body = Cow::Owned(b),
            None => undecoded = Some("chunked"),
        }
    }
    if decode {
        if let Some(enc) = encoding.as_deref() {
            match decode_body(&body, enc, max_body) {
                Ok(Some(b)) => body = Cow::Owned(b),
                Ok(None) => undecoded = Some("content-encoding"),
                Err(e) => return Err(e),
            }
        }
    }
    if body.len() as u64 > max_body {
        return Err(HttpError::Oversized(body.len() as u64));
    }
    Ok(HttpResponse {
        status: code,
        content_type: mime,
        charset,
        body,
        undecoded,
    })
}

fn header_end(block: &[u8]) -> Option<usize> {
    for nl in memchr::memchr_iter(b'\n', block) {
        match block.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if block.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => {}
        }
    }
    // A response with headers but no body may end right after the last header line.
    block.ends_with(b"\n").then_some(block.len())
}

/// Undo `Transfer-Encoding: chunked`; None if the framing is broken.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    loop {
        let nl = memchr::memchr(b'\n', data)?;
        let line = std::str::from_utf8(&data[..nl]).ok()?;
        let size_text = line.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        data = &data[nl + 1..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size..];
        // Chunk data is followed by CRLF.
        if data.starts_with(b"\r\n") {
            data = &data[2..];
        } else if data.starts_with(b"\n") {
            data = &data[1..];
        }
        if data.is_empty() {
            // Missing last-chunk: accept what was framed correctly.
            return Some(out);
        }
    }
}

/// Undo a Content-Encoding. Ok(None) when the encoding is unknown or the data is not what it
/// claims (servers mislabel often); Err when the decoded body exceeds the limit.
fn decode_body(data: &[u8], encoding: &str, max_body: u64) -> Result<Option<Vec<u8>>, HttpError> {
    let reader: Box<dyn Read + '_> = match encoding {
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(data)),
        "deflate" => {
            if data.len() >= 2 && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0 {
                Box::new(flate2::read::ZlibDecoder::new(data))
            } else {
                Box::new(flate2::read::DeflateDecoder::new(data))
            }
        }
        "br" => Box::new(brotli_decompressor::Decompressor::new(data, 4096)),
        _ => return Ok(None),
    };
    let mut out = Vec::with_capacity(data.len() * 4);
    match reader.take(max_body + 1).read_to_end(&mut out) {
        Ok(_) if out.len() as u64 > max_body => Err(HttpError::Oversized(out.len() as u64)),
        Ok(_) => Ok(Some(out)),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_headers_and_charset() {
        let block = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/HTML; Charset=\"ISO-8859-1\"\r\n\r\n<p>gone</p>";
        let r = parse_response(block, true, 1 << 20).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.content_type.as_deref(), Some("text/html"));
        assert_eq!(r.charset.as_deref(), Some("iso-8859-1"));
        assert_eq!(&*r.body, b"<p>gone</p>");
        let r = parse_response(b"HTTP/1.1 200 \r\n\r\nx", true, 10).unwrap();
        assert_eq!(r.status, 200);
    }

    #[test]
    fn undoes_chunked_and_gzip() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"hello world").unwrap();
        let gz = e.finish().unwrap();
        let mut block =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
                .to_vec();
        let (a, b) = gz.split_at(5);
        block.extend_from_slice(format!("{:x}\r\n", a.len()).as_bytes());
        block.extend_from_slice(a);
        block.extend_from_slice(format!("\r\n{:x};ext=1\r\n", b.len()).as_bytes());
        block.extend_from_slice(b);
        block.extend_from_slice(b"\r\n0\r\n\r\n");
        let r = parse_response(&block, true, 1 << 20).unwrap();
        assert_eq!(&*r.body, b"hello world");
        assert_eq!(r.undecoded, None);
        let raw = parse_response(&block, false, 1 << 20).unwrap();
        assert!(raw.body.len() > 11);
    }

    #[test]
    fn mislabelled_encoding_keeps_raw_body_and_limits_apply() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\nplain",
            true,
            100,
        )
        .unwrap();
        assert_eq!(&*r.body, b"plain");
        assert_eq!(r.undecoded, Some("content-encoding"));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n\r\n0123456789", true, 5).unwrap_err(),
            HttpError::Oversized(10)
        );
        assert!(matches!(
            parse_response(b"GET / HTTP/1.1\r\n\r\n", true, 5),
            Err(HttpError::Malformed(_))
        ));
    }
}
