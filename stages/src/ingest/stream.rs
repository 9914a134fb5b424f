//! A window over a decompressed shard: record parsers look at `avail()`, ask for more with
//! `ensure`, and `consume` what they have parsed. Offsets are absolute positions in the
//! decompressed stream. The bytes live in shared chunks (`chunk.rs`), so a record's payload
//! can go into an Arrow batch without being copied.

use super::chunk::{ChunkAllocator, ChunkMem, CHUNK_BYTES};
use super::source::{ByteSource, Fill, SourceError, MIN_FILL_SPACE};
use std::io::Read;
use std::sync::Arc;

pub struct DecodedStream<R> {
    pub src: ByteSource<R>,
    alloc: ChunkAllocator,
    chunk: Arc<ChunkMem>,
    /// Unconsumed bytes are `chunk[pos..len]`; `chunk[len..]` is free to decode into.
    pos: usize,
    len: usize,
    /// Decompressed offset of `chunk[0]`.
    base: u64,
    eof: bool,
    /// Free space the next decode needs.
    want: usize,
}

impl<R: Read> DecodedStream<R> {
    pub fn new(src: ByteSource<R>) -> Self {
        let alloc = ChunkAllocator::default();
        let chunk = alloc.chunk(CHUNK_BYTES);
        DecodedStream {
            src,
            alloc,
            chunk,
            pos: 0,
            len: 0,
            base: 0,
            eof: false,
            want: MIN_FILL_SPACE,
        }
    }

    /// Unconsumed decoded bytes.
    #[inline]
    pub fn avail(&self) -> &[u8] {
        // SAFETY: chunk[pos..len] is initialised and lies inside the chunk; it is written only
        // through `&mut self`, which this borrow excludes.
        unsafe {
            std::slice::from_raw_parts(self.chunk.as_ptr().add(self.pos), self.len - self.pos)
        }
    }

    /// The chunk `avail()` lies in, for building batches that reference it.
    #[inline]
    pub fn chunk(&self) -> &Arc<ChunkMem> {
        &self.chunk
    }

    /// Decompressed offset of the first unconsumed byte.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    #[inline]
    pub fn consume(&mut self, n: usize) {
        debug_assert!(self.pos + n <= self.len);
        self.pos += n;
    }

    pub fn at_eof(&self) -> bool {
        self.eof && self.pos == self.len
    }

    /// Make `want` bytes of free space after the unconsumed ones: in place when nobody else
    /// holds the chunk, else in a fresh chunk (the old one lives on in the batches using it).
    fn make_room(&mut self, want: usize) {
        let cap = self.chunk.capacity();
        if cap - self.len >= want {
            return;
        }
        let tail = self.len - self.pos;
        // A record too big for its chunk grows it geometrically, so reading it stays linear.
        let size = if tail > cap / 2 {
            (tail + want).max(cap * 2)
        } else {
            tail + want
        };
        if Arc::get_mut(&mut self.chunk).is_some() && cap >= size {
            // SAFETY: the chunk is held only here, so no batch sees the bytes moved over;
            // source and destination lie inside it (ptr::copy allows overlap).
            unsafe {
                let p = self.chunk.as_ptr();
                std::ptr::copy(p.add(self.pos), p, tail);
            }
        } else {
            let fresh = self.alloc.chunk(size);
            // SAFETY: the tail is initialised bytes of the old chunk; the fresh chunk is held
            // only here and has room for them.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.chunk.as_ptr().add(self.pos),
                    fresh.as_ptr(),
                    tail,
                );
            }
            self.chunk = fresh;
        }
        self.base += self.pos as u64;
        self.len = tail;
        self.pos = 0;
    }

    /// Decode more bytes into the window; false at the end of the shard.
    pub fn fill_more(&mut self) -> Result<bool, SourceError> {
        if self.eof {
            return Ok(false);
        }
        loop {
            self.make_room(self.want);
            let cap = self.chunk.capacity();
            // SAFETY: chunk[len..cap] is initialised memory that no one reads: batches only
            // reference bytes below `len`, and `&mut self` excludes `avail()` borrows.
            let spare = unsafe {
                std::slice::from_raw_parts_mut(self.chunk.as_ptr().add(self.len), cap - self.len)
            };
            match self.src.fill(spare)? {
                Fill::Wrote(n) => {
                    self.len += n;
                    self.want = MIN_FILL_SPACE;
                    return Ok(true);
                }
                Fill::End => {
                    self.eof = true;
                    return Ok(false);
                }
                Fill::NeedSpace(n) => self.want = n.max(self.want),
            }
        }
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
        self.pos = self.len;
    }
}
