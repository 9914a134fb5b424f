//! A growable window over a decompressed shard: record parsers look at `avail()`, ask for
//! more with `ensure`, and `consume` what they have parsed. Offsets are absolute positions in
//! the decompressed stream.

use super::source::{ByteSource, SourceError};
use std::io::Read;

const FILL_CHUNK: usize = 256 * 1024;

pub struct DecodedStream<R> {
    pub src: ByteSource<R>,
    buf: Vec<u8>,
    pos: usize,
    base: u64,
    eof: bool,
}

impl<R: Read> DecodedStream<R> {
    pub fn new(src: ByteSource<R>) -> Self {
        DecodedStream {
            src,
            buf: Vec::with_capacity(FILL_CHUNK * 2),
            pos: 0,
            base: 0,
            eof: false,
        }
    }

    /// Unconsumed decoded bytes.
    #[inline]
    pub fn avail(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Decompressed offset of the first unconsumed byte.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    #[inline]
    pub fn consume(&mut self, n: usize) {
        debug_assert!(self.pos + n <= self.buf.len());
        self.pos += n;
    }

    pub fn at_eof(&self) -> bool {
        self.eof && self.pos == self.buf.len()
    }

    /// Decode more bytes into the window; false at the end of the shard.
    pub fn fill_more(&mut self) -> Result<bool, SourceError> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos >= self.buf.len() / 2) {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        if self.src.fill(&mut self.buf, FILL_CHUNK)? == 0 {
            self.eof = true;
            return Ok(false);
        }
        Ok(true)
    }

    /// Make at least `n` unconsumed bytes available; false if the shard ends first.
    pub fn ensure(&mut self, n: usize) -> Result<bool, SourceError> {
        while self.avail().len() < n {
            if !self.fill_more()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Consume `n` bytes without keeping them; returns how many were there before the end.
    pub fn skip(&mut self, n: u64) -> Result<u64, SourceError> {
        let mut left = n;
        loop {
            let take = (self.avail().len() as u64).min(left);
            self.consume(take as usize);
            left -= take;
            if left == 0 || !self.fill_more()? {
                return Ok(n - left);
            }
        }
    }

    /// Drop everything decoded but unconsumed (after a corrupt member: those bytes belong to a
    /// rejected record).
    pub fn discard(&mut self) {
        self.pos = self.buf.len();
    }
}
