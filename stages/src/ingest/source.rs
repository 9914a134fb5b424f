//! Decompressed byte streams over a shard: plain, gzip (one member per record as in Common
//! Crawl, or one member for the whole file) and zstd. Gzip members are decoded by hand on top
//! of a raw inflater so that every member's compressed offset is known (records are located
//! by it) and a corrupt member is reported and skipped instead of ending the shard.

use harman_schemas::RejectReason;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::io::{self, Read};

const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const INPUT_CHUNK: usize = 1 << 20;
/// Longest gzip header (FEXTRA/FNAME/FCOMMENT) accepted before the member is declared corrupt.
const MAX_GZIP_HEADER: usize = 1 << 16;
/// Whole-member decoding first offers this much output space, growing 4x up to the max.
const WHOLE_OUT_START: usize = 1 << 20;
const WHOLE_OUT_MAX: usize = 64 << 20;
/// Members whose compressed bytes do not fit in this much input are streamed.
const WHOLE_IN_MAX: usize = 32 << 20;
/// Free space to offer `ByteSource::fill`: the first size whole-member decoding tries.
pub const MIN_FILL_SPACE: usize = WHOLE_OUT_START;

/// What one `ByteSource::fill` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// This many decoded bytes were written at the start of the space given.
    Wrote(usize),
    /// The shard has ended.
    End,
    /// Nothing was written: the next gzip member wants at least this much free space.
    NeedSpace(usize),
}

/// How a shard's bytes are compressed, judged from its first bytes (never from its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(prefix: &[u8]) -> Compression {
        if prefix.starts_with(&GZIP_MAGIC[..2]) {
            Compression::Gzip
        } else if prefix.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// A recoverable problem in the compressed stream: the bytes decoded so far are good, the
/// stream continues at the next member (gzip) or frame (zstd) after `offset`.
#[derive(Debug, Clone)]
pub struct Corruption {
    /// Compressed offset of the member or frame that failed.
    pub offset: u64,
    pub reason: RejectReason,
    pub detail: String,
}

/// Errors of a decompressed stream.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{}", .0.detail)]
    Corrupt(Corruption),
    #[error("read error: {0}")]
    Io(#[from] io::Error),
}

/// Buffered compressed input that knows the absolute offset of every byte and hashes what it
/// reads (the manifest records the sha256 of every input).
struct Input<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    base: u64,
    eof: bool,
    hasher: Sha256,
}

impl<R: Read> Input<R> {
    fn new(inner: R) -> Self {
        Input {
            inner,
            buf: vec![0; INPUT_CHUNK],
            start: 0,
            end: 0,
            base: 0,
            eof: false,
            hasher: Sha256::new(),
        }
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    fn consume(&mut self, n: usize) {
        debug_assert!(self.start + n <= self.end);
        self.start += n;
    }

    /// Read more bytes; false at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.hasher.update(&self.buf[self.end..self.end + n]);
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Make at least `n` bytes available; false if the input ends first.
    fn ensure(&mut self, n: usize) -> io::Result<bool> {
        while self.end - self.start < n {
            if !self.fill()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Hash of everything read, after draining the input to its end.
    fn finish_hash(&mut self) -> io::Result<String> {
        self.start = self.end;
        while self.fill()? {
            self.start = self.end;
        }
        Ok(hex::encode(self.hasher.clone().finalize()))
    }
}

/// Result of looking for a gzip header at the start of a slice.
enum Header {
    Complete(usize),
    NeedMore,
    Invalid(&'static str),
}

fn parse_gzip_header(b: &[u8]) -> Header {
    if b.len() < 10 {
        return Header::NeedMore;
    }
    if b[..3] != GZIP_MAGIC {
        return Header::Invalid("not a gzip member header");
    }
    let flags = b[3];
    if flags & 0xe0 != 0 {
        return Header::Invalid("reserved gzip header flags set");
    }
    let mut at = 10;
    if flags & 0x04 != 0 {
        if b.len() < at + 2 {
            return Header::NeedMore;
        }
        let xlen = u16::from_le_bytes([b[at], b[at + 1]]) as usize;
        at += 2 + xlen;
        if b.len() < at {
            return Header::NeedMore;
        }
    }
    for flag in [0x08u8, 0x10] {
        if flags & flag != 0 {
            match memchr::memchr(0, &b[at.min(b.len())..]) {
                Some(nul) => at += nul + 1,
                None => return Header::NeedMore,
            }
        }
    }
    if flags & 0x02 != 0 {
        at += 2;
        if b.len() < at {
            return Header::NeedMore;
        }
    }
    Header::Complete(at)
}

/// Gzip member bookkeeping: where each member starts, compressed and decompressed.
#[derive(Debug, Clone, Copy)]
struct Member {
    decoded_start: u64,
    offset: u64,
}

/// Mutable view of the gzip decoder's state.
struct GzipState<'a> {
    inflate: &'a mut flate2::Decompress,
    in_member: &'a mut bool,
    member_offset: &'a mut u64,
    crc: &'a mut crc32fast::Hasher,
    resync: &'a mut bool,
}

fn gzip_state(decoder: &mut Decoder) -> GzipState<'_> {
    match decoder {
        Decoder::Gzip {
            inflate,
            in_member,
            member_offset,
            crc,
            resync,
        } => GzipState {
            inflate,
            in_member,
            member_offset,
            crc,
            resync,
        },
        _ => unreachable!("gzip state of a non-gzip decoder"),
    }
}

enum Decoder {
    Plain,
    Gzip {
        inflate: Box<flate2::Decompress>,
        in_member: bool,
        member_offset: u64,
        crc: crc32fast::Hasher,
        /// After a corrupt member: look for the next member header instead of failing.
        resync: bool,
    },
    Zstd {
        dctx: Box<zstd::stream::raw::Decoder<'static>>,
        frame_offset: u64,
        in_frame: bool,
    },
}

/// A decompressed view of a shard, produced in chunks.
pub struct ByteSource<R> {
    input: Input<R>,
    decoder: Decoder,
    compression: Compression,
    decoded: u64,
    members: VecDeque<Member>,
    /// Fast path for whole gzip members (None: streaming only).
    whole: Option<super::inflate::WholeMemberDecoder>,
}

impl<R: Read> ByteSource<R> {
    /// Open a shard, detecting its compression from the first bytes.
    pub fn new(inner: R) -> io::Result<Self> {
        let mut input = Input::new(inner);
        input.ensure(4)?;
        let compression = Compression::detect(input.avail());
        let decoder = match compression {
            Compression::None => Decoder::Plain,
            Compression::Gzip => Decoder::Gzip {
                inflate: Box::new(flate2::Decompress::new(false)),
                in_member: false,
                member_offset: 0,
                crc: crc32fast::Hasher::new(),
                resync: false,
            },
            Compression::Zstd => Decoder::Zstd {
                dctx: Box::new(zstd::stream::raw::Decoder::new()?),
                frame_offset: 0,
                in_frame: false,
            },
        };
        Ok(ByteSource {
            input,
            decoder,
            compression,
            decoded: 0,
            members: VecDeque::new(),
            whole: (compression == Compression::Gzip)
                .then(super::inflate::WholeMemberDecoder::new)
                .flatten(),
        })
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Decompressed bytes produced so far.
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    /// Compressed bytes consumed so far.
    pub fn compressed_offset(&self) -> u64 {
        self.input.offset()
    }

    /// The offset by which a record starting at decompressed position `pos` is located: the
    /// compressed offset of the gzip member holding it (what Common Crawl indexes record), else
    /// `pos` itself.
    pub fn locate(&self, pos: u64) -> u64 {
        match self.compression {
            Compression::Gzip => self
                .members
                .iter()
                .rev()
                .find(|m| m.decoded_start <= pos)
                .map(|m| m.offset)
                .unwrap_or(pos),
            _ => pos,
        }
    }

    /// True when decompressed bytes `start..end` come from more than one gzip member.
    pub fn spans_members(&self, start: u64, end: u64) -> bool {
        self.compression == Compression::Gzip
            && self
                .members
                .iter()
                .any(|m| m.decoded_start > start && m.decoded_start < end)
    }

    /// Forget member bookkeeping before decompressed position `pos`.
    pub fn forget_before(&mut self, pos: u64) {
        while self.members.len() > 1 && self.members[1].decoded_start <= pos {
            self.members.pop_front();
        }
    }

    /// Drain the rest of the input and return the sha256 of all compressed bytes.
    pub fn finish_hash(&mut self) -> io::Result<String> {
        self.input.finish_hash()
    }

    /// Decode bytes into `out` (offer at least `MIN_FILL_SPACE`). A `Corrupt` error leaves
    /// the stream ready to continue after the bad member or frame; nothing is written then.
    pub fn fill(&mut self, out: &mut [u8]) -> Result<Fill, SourceError> {
        let filled = match &mut self.decoder {
            Decoder::Plain => {
                if self.input.avail().is_empty() && !self.input.fill()? {
                    return Ok(Fill::End);
                }
                let take = self.input.avail().len().min(out.len());
                out[..take].copy_from_slice(&self.input.avail()[..take]);
                self.input.consume(take);
                Fill::Wrote(take)
            }
            Decoder::Gzip { .. } => self.fill_gzip(out)?,
            Decoder::Zstd { .. } => self.fill_zstd(out)?,
        };
        if let Fill::Wrote(n) = filled {
            self.decoded += n as u64;
        }
        Ok(filled)
    }

    fn corrupt(offset: u64, reason: RejectReason, detail: String) -> SourceError {
        SourceError::Corrupt(Corruption {
            offset,
            reason,
            detail,
        })
    }

    fn fill_gzip(&mut self, out: &mut [u8]) -> Result<Fill, SourceError> {
        loop {
            if !*gzip_state(&mut self.decoder).in_member {
                // Start of a member: find it, then decode it whole or start streaming it.
                if self.input.avail().is_empty() && !self.input.fill()? {
                    return Ok(Fill::End);
                }
                let resync = *gzip_state(&mut self.decoder).resync;
                if resync || !self.input.avail().starts_with(&GZIP_MAGIC[..1]) {
                    let start = self.input.offset();
                    let skipped = skip_to_magic(&mut self.input)?;
                    *gzip_state(&mut self.decoder).resync = false;
                    if skipped > 0 && !resync {
                        return Err(Self::corrupt(
                            start,
                            RejectReason::Garbage,
                            format!(
                                "{skipped} bytes at offset {start} are not a gzip member; skipped to the next member"
                            ),
                        ));
                    }
                    if self.input.avail().is_empty() {
                        return Ok(Fill::End);
                    }
                }
                if let Some(filled) = self.try_whole_member(out)? {
                    return Ok(filled);
                }
                self.start_streamed_member()?;
            }

            let GzipState {
                inflate,
                in_member,
                member_offset,
                crc,
                ..
            } = gzip_state(&mut self.decoder);
            let offset = *member_offset;
            if self.input.avail().is_empty() && !self.input.fill()? {
                *in_member = false;
                return Err(Self::corrupt(
                    offset,
                    RejectReason::TruncatedRecord,
                    format!("gzip member at offset {offset} is cut off: the input ends inside it"),
                ));
            }
            let in_before = inflate.total_in();
            let out_before = inflate.total_out();
            let status = inflate.decompress(self.input.avail(), out, flate2::FlushDecompress::None);
            let consumed = (inflate.total_in() - in_before) as usize;
            let produced = (inflate.total_out() - out_before) as usize;
            self.input.consume(consumed);
            crc.update(&out[..produced]);
            match status {
                Ok(flate2::Status::StreamEnd) => {
                    *in_member = false;
                    let got_crc = std::mem::replace(crc, crc32fast::Hasher::new()).finalize();
                    let got_len = inflate.total_out() as u32;
                    if !self.input.ensure(8)? {
                        let have = self.input.avail().len();
                        self.input.consume(have);
                        return Err(Self::corrupt(
                            offset,
                            RejectReason::TruncatedRecord,
                            format!("gzip member at offset {offset}: trailer cut off"),
                        ));
                    }
                    let t = self.input.avail();
                    let want_crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                    let want_len = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
                    self.input.consume(8);
                    if got_crc != want_crc || got_len != want_len {
                        return Err(Self::corrupt(
                            offset,
                            RejectReason::CorruptGzip,
                            format!(
                                "gzip member at offset {offset}: CRC/length check failed (crc {got_crc:08x} vs {want_crc:08x}, length {got_len} vs {want_len})"
                            ),
                        ));
                    }
                    if produced > 0 {
                        return Ok(Fill::Wrote(produced));
                    }
                }
                Ok(_) => {
                    if produced > 0 {
                        return Ok(Fill::Wrote(produced));
                    }
                    if consumed == 0 && !self.input.fill()? {
                        *in_member = false;
                        return Err(Self::corrupt(
                            offset,
                            RejectReason::TruncatedRecord,
                            format!("gzip member at offset {offset} is cut off: the input ends inside it"),
                        ));
                    }
                }
                Err(e) => {
                    *in_member = false;
                    *gzip_state(&mut self.decoder).resync = true;
                    // Bytes decoded in this call are dropped with the member.
                    return Err(Self::corrupt(
                        offset,
                        RejectReason::CorruptGzip,
                        format!(
                            "gzip member at offset {offset}: deflate error near offset {}: {e}",
                            self.input.offset()
                        ),
                    ));
                }
            }
        }
    }

    /// Parse the header of the member at the input position and set up streaming inflation.
    fn start_streamed_member(&mut self) -> Result<(), SourceError> {
        let offset = self.input.offset();
        let header_len = loop {
            match parse_gzip_header(self.input.avail()) {
                Header::Complete(n) => break n,
                Header::Invalid(why) => {
                    self.input.consume(1);
                    *gzip_state(&mut self.decoder).resync = true;
                    return Err(Self::corrupt(
                        offset,
                        RejectReason::CorruptGzip,
                        format!("gzip member at offset {offset}: {why}"),
                    ));
                }
                Header::NeedMore => {
                    let have = self.input.avail().len();
                    if have > MAX_GZIP_HEADER || !self.input.ensure(have + 1)? {
                        self.input.consume(have.min(1));
                        *gzip_state(&mut self.decoder).resync = true;
                        return Err(Self::corrupt(
                            offset,
                            RejectReason::TruncatedRecord,
                            format!("gzip member at offset {offset}: header cut off"),
                        ));
                    }
                }
            }
        };
        self.input.consume(header_len);
        let decoded = self.decoded;
        let state = gzip_state(&mut self.decoder);
        state.inflate.reset(false);
        *state.crc = crc32fast::Hasher::new();
        *state.in_member = true;
        *state.member_offset = offset;
        self.members.push_back(Member {
            decoded_start: decoded,
            offset,
        });
        Ok(())
    }

    /// Decode the member at the current input position in one call when it is complete and
    /// fits `out`; `NeedSpace` to be offered more room (up to a limit), None to stream it.
    fn try_whole_member(&mut self, out: &mut [u8]) -> Result<Option<Fill>, SourceError> {
        let Some(whole) = self.whole.as_mut() else {
            return Ok(None);
        };
        let offset = self.input.offset();
        loop {
            match whole.decode(self.input.avail(), out) {
                super::inflate::Whole::Done { consumed, produced } => {
                    self.input.consume(consumed);
                    self.members.push_back(Member {
                        decoded_start: self.decoded,
                        offset,
                    });
                    return Ok(Some(Fill::Wrote(produced)));
                }
                super::inflate::Whole::NeedsMoreSpace if out.len() < WHOLE_OUT_MAX => {
                    let more = (out.len().max(WHOLE_OUT_START) * 4).min(WHOLE_OUT_MAX);
                    return Ok(Some(Fill::NeedSpace(more)));
                }
                super::inflate::Whole::NeedsMoreSpace => return Ok(None),
                super::inflate::Whole::Incomplete => {
                    // Perhaps the member continues past what has been read: read more and
                    // retry, within bounds; else let the streaming decoder find what is wrong.
                    let have = self.input.avail().len();
                    if have >= WHOLE_IN_MAX || !self.input.ensure(have * 2)? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn fill_zstd(&mut self, out: &mut [u8]) -> Result<Fill, SourceError> {
        use zstd::stream::raw::Operation;
        let Decoder::Zstd {
            dctx,
            frame_offset,
            in_frame,
        } = &mut self.decoder
        else {
            unreachable!("fill_zstd on a non-zstd decoder")
        };
        loop {
            if self.input.avail().is_empty() && !self.input.fill()? {
                if *in_frame {
                    *in_frame = false;
                    return Err(Self::corrupt(
                        *frame_offset,
                        RejectReason::TruncatedRecord,
                        format!("zstd frame at offset {frame_offset} is cut off"),
                    ));
                }
                return Ok(Fill::End);
            }
            if !*in_frame {
                *frame_offset = self.input.offset();
                *in_frame = true;
            }
            let result = dctx.run_on_buffers(self.input.avail(), out);
            match result {
                Ok(status) => {
                    self.input.consume(status.bytes_read);
                    if status.remaining == 0 {
                        *in_frame = false;
                    }
                    if status.bytes_written > 0 {
                        return Ok(Fill::Wrote(status.bytes_written));
                    }
                    if status.bytes_read == 0 && !self.input.fill()? && *in_frame {
                        *in_frame = false;
                        return Err(Self::corrupt(
                            *frame_offset,
                            RejectReason::TruncatedRecord,
                            format!("zstd frame at offset {frame_offset} is cut off"),
                        ));
                    }
                }
                Err(e) => {
                    let offset = *frame_offset;
                    *in_frame = false;
                    dctx.reinit()?;
                    // Continue at the next frame magic, if any.
                    self.input.consume(1);
                    skip_to_zstd_magic(&mut self.input)?;
                    return Err(Self::corrupt(
                        offset,
                        RejectReason::CorruptZstd,
                        format!("zstd frame at offset {offset}: {e}"),
                    ));
                }
            }
        }
    }
}

/// Skip input up to the next gzip member magic; returns the number of bytes skipped.
fn skip_to_magic<R: Read>(input: &mut Input<R>) -> io::Result<u64> {
    skip_to(input, &GZIP_MAGIC)
}

fn skip_to_zstd_magic<R: Read>(input: &mut Input<R>) -> io::Result<u64> {
    skip_to(input, &ZSTD_MAGIC)
}

fn skip_to<R: Read>(input: &mut Input<R>, magic: &[u8]) -> io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        if let Some(at) = memchr::memmem::find(input.avail(), magic) {
            input.consume(at);
            return Ok(skipped + at as u64);
        }
        // Keep a possible partial magic at the end of the buffer.
        let keep = (magic.len() - 1).min(input.avail().len());
        let drop = input.avail().len() - keep;
        input.consume(drop);
        skipped += drop as u64;
        if !input.fill()? {
            let rest = input.avail().len();
            input.consume(rest);
            return Ok(skipped + rest as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn drain(src: &mut ByteSource<&[u8]>) -> (Vec<u8>, Vec<Corruption>) {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        let mut space = vec![0u8; 4096];
        loop {
            match src.fill(&mut space) {
                Ok(Fill::End) => return (out, errors),
                Ok(Fill::Wrote(n)) => out.extend_from_slice(&space[..n]),
                Ok(Fill::NeedSpace(n)) => space.resize(n, 0),
                Err(SourceError::Corrupt(c)) => errors.push(c),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn members_are_located_by_compressed_offset() {
        let a = gz(b"first member ");
        let b = gz(b"second member");
        let mut file = a.clone();
        file.extend_from_slice(&b);
        let mut src = ByteSource::new(&file[..]).unwrap();
        let (out, errors) = drain(&mut src);
        assert!(errors.is_empty());
        assert_eq!(out, b"first member second member");
        assert_eq!(src.locate(0), 0);
        assert_eq!(src.locate(13), a.len() as u64);
        assert!(src.spans_members(5, 20));
        assert!(!src.spans_members(13, 20));
    }

    #[test]
    fn corrupt_member_is_reported_and_skipped() {
        let a = gz(&b"good one ".repeat(50));
        let mut bad = gz(&b"this member will be damaged ".repeat(50));
        let mid = bad.len() / 2;
        for byte in &mut bad[12..mid] {
            *byte ^= 0x5a;
        }
        let c = gz(b"good three");
        let file = [a.clone(), bad.clone(), c].concat();
        let mut src = ByteSource::new(&file[..]).unwrap();
        let (out, errors) = drain(&mut src);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].offset, a.len() as u64);
        assert!(out.starts_with(b"good one"));
        assert!(out.ends_with(b"good three"));
    }

    #[test]
    fn truncated_member_is_reported() {
        let a = gz(&b"abcdefgh".repeat(1000));
        let cut = &a[..a.len() - 20];
        let mut src = ByteSource::new(cut).unwrap();
        let (_, errors) = drain(&mut src);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].reason, RejectReason::TruncatedRecord);
    }

    #[test]
    fn plain_and_zstd_pass_through() {
        let mut src = ByteSource::new(&b"plain text"[..]).unwrap();
        assert_eq!(src.compression(), Compression::None);
        assert_eq!(drain(&mut src).0, b"plain text");
        let z = zstd::encode_all(&b"zstd text"[..], 3).unwrap();
        let mut src = ByteSource::new(&z[..]).unwrap();
        assert_eq!(src.compression(), Compression::Zstd);
        assert_eq!(drain(&mut src).0, b"zstd text");
    }
}
