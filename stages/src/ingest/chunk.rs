//! The memory records are decompressed into, shared with the Arrow batches built from them.
//!
//! A shard is inflated into large chunks. A document's payload (or WET text) is not copied
//! out: its column holds a view (`BinaryView` / `Utf8View`) into the chunk it was decoded
//! into, and the batch keeps the chunk alive. This is sound because a chunk is only ever
//! appended to: the bytes a batch sees (a prefix of the chunk) are never written again, and
//! the stream reuses a chunk's memory in place only while nothing else holds it. Chunks that
//! every batch has let go of return to a small per-shard pool, so steady-state reading
//! neither allocates nor faults in fresh pages.

use arrow::array::{make_view, ArrayRef, BinaryViewArray, NullBufferBuilder, StringViewArray};
use arrow::buffer::{Buffer, ScalarBuffer};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

/// Chunks kept for reuse per shard.
const POOL_MAX: usize = 4;

type Pool = Arc<Mutex<Vec<Box<[u8]>>>>;

/// One decode chunk: fixed-size, initialised memory (zeroed when first allocated).
pub struct ChunkMem {
    ptr: NonNull<u8>,
    cap: usize,
    pool: Pool,
}

// SAFETY: the memory is owned by this value. It is written only by the one stream that holds
// it, into its not-yet-shared suffix, through `&mut` access (see `DecodedStream`); shared
// readers (Arrow buffers) only read prefixes that are no longer written.
unsafe impl Send for ChunkMem {}
unsafe impl Sync for ChunkMem {}

impl std::fmt::Debug for ChunkMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkMem")
            .field("capacity", &self.cap)
            .finish()
    }
}

impl ChunkMem {
    fn from_box(mem: Box<[u8]>, pool: Pool) -> Self {
        let cap = mem.len();
        let ptr = NonNull::new(Box::into_raw(mem).cast::<u8>()).unwrap_or(NonNull::dangling());
        ChunkMem { ptr, cap, pool }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Where `bytes` start inside this chunk, if they lie wholly inside it.
    pub fn offset_of(&self, bytes: &[u8]) -> Option<usize> {
        let start = (bytes.as_ptr() as usize).checked_sub(self.ptr.as_ptr() as usize)?;
        (start + bytes.len() <= self.cap).then_some(start)
    }
}

impl Drop for ChunkMem {
    fn drop(&mut self) {
        // SAFETY: ptr/cap came from Box::into_raw of a boxed slice of this length, once.
        let mem = unsafe {
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.cap,
            ))
        };
        if let Ok(mut pool) = self.pool.lock() {
            if pool.len() < POOL_MAX && mem.len() == CHUNK_BYTES {
                pool.push(mem);
            }
        }
    }
}

/// Size of a regular chunk; larger ones are made for records that do not fit.
pub const CHUNK_BYTES: usize = 8 << 20;

/// Hands out chunks for one shard, reusing those every batch has released.
#[derive(Clone, Default)]
pub struct ChunkAllocator {
    pool: Pool,
}

impl ChunkAllocator {
    /// A chunk of at least `min` bytes.
    pub fn chunk(&self, min: usize) -> Arc<ChunkMem> {
        if min <= CHUNK_BYTES {
            let reused = self.pool.lock().ok().and_then(|mut p| p.pop());
            let mem = reused.unwrap_or_else(|| vec![0u8; CHUNK_BYTES].into_boxed_slice());
            return Arc::new(ChunkMem::from_box(mem, self.pool.clone()));
        }
        Arc::new(ChunkMem::from_box(
            vec![0u8; min].into_boxed_slice(),
            self.pool.clone(),
        ))
    }
}

/// One data buffer of a view column being built.
enum Block {
    /// Bytes copied in.
    Owned(Vec<u8>),
    /// A chunk referenced in place, with the end of the prefix in use.
    Chunk(Arc<ChunkMem>, usize),
}

/// Builds a `BinaryView` or `Utf8View` column whose values are views into decode chunks when
/// they come from one, and copies otherwise (decoded HTTP bodies, JSON strings).
pub struct ViewColumnBuilder {
    views: Vec<u128>,
    nulls: NullBufferBuilder,
    blocks: Vec<Block>,
    /// The owned block copies go to, and the chunk block last referenced.
    owned: Option<usize>,
    chunk: Option<usize>,
}

impl Default for ViewColumnBuilder {
    fn default() -> Self {
        ViewColumnBuilder {
            views: Vec::new(),
            nulls: NullBufferBuilder::new(0),
            blocks: Vec::new(),
            owned: None,
            chunk: None,
        }
    }
}

impl ViewColumnBuilder {
    /// Append `value`; when it lies inside `chunk` (memory the stream will not write again),
    /// reference it there instead of copying.
    pub fn append(&mut self, value: Option<&[u8]>, chunk: Option<&Arc<ChunkMem>>) {
        let Some(bytes) = value else {
            self.views.push(0);
            self.nulls.append_null();
            return;
        };
        self.nulls.append_non_null();
        if bytes.len() <= 12 {
            // Short values live inside the view itself.
            self.views.push(make_view(bytes, 0, 0));
            return;
        }
        if let Some((chunk, start)) = chunk.and_then(|c| c.offset_of(bytes).map(|s| (c, s))) {
            let end = start + bytes.len();
            if u32::try_from(end).is_ok() {
                let block = match self.chunk.map(|i| (i, &mut self.blocks[i])) {
                    Some((i, Block::Chunk(last, used))) if Arc::ptr_eq(last, chunk) => {
                        *used = (*used).max(end);
                        i
                    }
                    _ => {
                        self.blocks.push(Block::Chunk(chunk.clone(), end));
                        self.chunk = Some(self.blocks.len() - 1);
                        self.blocks.len() - 1
                    }
                };
                self.views
                    .push(make_view(bytes, block as u32, start as u32));
                return;
            }
        }
        // Copy into the current owned block, or a new one when its u32 offsets would overflow.
        let fits = |b: &Block| match b {
            Block::Owned(v) => u32::try_from(v.len() + bytes.len()).is_ok(),
            Block::Chunk(..) => false,
        };
        let block = match self.owned {
            Some(i) if fits(&self.blocks[i]) => i,
            _ => {
                self.blocks.push(Block::Owned(Vec::new()));
                self.owned = Some(self.blocks.len() - 1);
                self.blocks.len() - 1
            }
        };
        if let Block::Owned(v) = &mut self.blocks[block] {
            let start = v.len();
            v.extend_from_slice(bytes);
            self.views
                .push(make_view(bytes, block as u32, start as u32));
        }
    }

    fn buffers(&mut self) -> Vec<Buffer> {
        self.owned = None;
        self.chunk = None;
        self.blocks
            .drain(..)
            .map(|block| match block {
                Block::Owned(v) => Buffer::from_vec(v),
                Block::Chunk(chunk, used) => {
                    let ptr = NonNull::new(chunk.as_ptr()).unwrap_or(NonNull::dangling());
                    // SAFETY: `used` bytes from `ptr` are initialised memory of the chunk,
                    // which the Arc keeps alive as long as the buffer; the stream never writes
                    // that prefix again while this Arc exists (it reuses only a chunk it holds
                    // uniquely).
                    unsafe { Buffer::from_custom_allocation(ptr, used, chunk) }
                }
            })
            .collect()
    }

    /// The values so far as a `BinaryView` array.
    pub fn finish_binary(&mut self) -> ArrayRef {
        let views = ScalarBuffer::from(std::mem::take(&mut self.views));
        let nulls = self.nulls.finish();
        let buffers = self.buffers();
        // SAFETY: every view was made by `make_view` over bytes that lie in the block and at
        // the offset it names.
        Arc::new(unsafe { BinaryViewArray::new_unchecked(views, buffers, nulls) })
    }
}

/// A `Utf8View` column built like [`ViewColumnBuilder`]; it accepts `&str` values only.
#[derive(Default)]
pub struct TextViewBuilder(ViewColumnBuilder);

impl TextViewBuilder {
    pub fn append(&mut self, value: Option<&str>, chunk: Option<&Arc<ChunkMem>>) {
        self.0.append(value.map(str::as_bytes), chunk);
    }

    /// The values so far as a `Utf8View` array.
    pub fn finish(&mut self) -> ArrayRef {
        let b = &mut self.0;
        let views = ScalarBuffer::from(std::mem::take(&mut b.views));
        let nulls = b.nulls.finish();
        let buffers = b.buffers();
        // SAFETY: as in finish_binary, and every value appended was a `&str`, so every view
        // covers valid UTF-8.
        Arc::new(unsafe { StringViewArray::new_unchecked(views, buffers, nulls) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    #[test]
    fn values_inside_a_chunk_are_views_others_are_copied() {
        let alloc = ChunkAllocator::default();
        let chunk = alloc.chunk(100);
        // SAFETY (test): nothing else holds the chunk yet.
        let mem = unsafe { std::slice::from_raw_parts_mut(chunk.as_ptr(), 64) };
        mem.copy_from_slice(&[b'x'; 64]);
        mem[10..30].copy_from_slice(b"a payload in a chunk");
        let inside: &[u8] = unsafe { std::slice::from_raw_parts(chunk.as_ptr().add(10), 20) };
        let mut b = ViewColumnBuilder::default();
        b.append(Some(inside), Some(&chunk));
        b.append(None, None);
        b.append(Some(b"short"), None);
        b.append(Some(b"an owned value, copied"), Some(&chunk));
        let arr = b.finish_binary();
        let arr = arr.as_binary_view();
        assert_eq!(arr.value(0), b"a payload in a chunk");
        assert!(arr.is_null(1));
        assert_eq!(arr.value(2), b"short");
        assert_eq!(arr.value(3), b"an owned value, copied");
        assert_eq!(arr.data_buffers().len(), 2);
        assert_eq!(arr.data_buffers()[0].len(), 30);
        drop(b);
        // The batch keeps the chunk alive after the stream lets go.
        drop(chunk);
        assert_eq!(arr.value(0), b"a payload in a chunk");
    }

    #[test]
    fn released_chunks_are_reused() {
        let alloc = ChunkAllocator::default();
        let a = alloc.chunk(1);
        let ptr = a.as_ptr();
        drop(a);
        assert_eq!(alloc.chunk(1).as_ptr(), ptr);
        assert_eq!(alloc.chunk(CHUNK_BYTES + 1).capacity(), CHUNK_BYTES + 1);
    }
}
