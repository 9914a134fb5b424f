// Causal multi-head attention on the tensor cores (FlashAttention-2's schedule): bf16
// operands, fp32 accumulation through `mma.sync.m16n8k16`, no T×T matrix in memory.
// qkv is [B, T, 3C] (head h's query at columns h*HS, key at C + h*HS, value at 2C + h*HS),
// out [B, T, C], lse [B, NH, T] (natural log of the softmax denominator of the scaled
// scores). A block is 4 warps; each warp owns 16 rows (queries, or keys in dK/dV), so a
// block owns a tile of 64. Tiles of the other operand are staged in shared memory
// row-major (16-byte loads, rows padded so ldmatrix is free of bank conflicts); ldmatrix
// reads them as B fragments, transposed (.trans) for the products along the sequence. The
// backward pass is three kernels without atomics: D = rowsum(dout * out)
// (flash_backward_d), dK/dV per key tile looping over query tiles, and
// dQ per query tile looping over key tiles; every sum runs in a fixed order, so results
// repeat bit for bit. The probabilities are recomputed from the saved log-sum-exp and fed
// to the second product as bf16, as FlashAttention does. The backward kernels walk each
// 64-row tile of the other operand in chunks of CHUNK = 16 rows (the scores of a chunk take
// 16 registers per thread instead of 64, so more warps fit on an SM) and skip the chunks the
// causal mask empties.
//
// Built a second way with -DWGMMA (sm_90a, kernels named *_wg): the products run on Hopper's
// warpgroup MMA (wgmma.mma_async, a block's 4 warps as one warpgroup, 64 × N per
// instruction; the forward pass and dQ run two warpgroups a block on 128 queries, sharing
// each key and value tile) reading the other operand straight from shared memory, which holds the
// tiles in wgmma's no-swizzle core-matrix layout instead of padded rows; the A operand (this
// warp's rows, or the probabilities) stays in registers in the same layout as mma.sync's,
// and the accumulators have mma.sync's layout too, so the softmax and masking code is
// shared. A wgmma takes the whole warpgroup, so these builds do not skip a chunk for one
// warp only (they mask it). wgmma is asynchronous, so the backward kernels issue S and dP
// as two groups and compute P while dP is still in flight (and, in dK/dV, dS while dV's
// product is).

#ifndef HS
#define HS 64
#endif
// Built without dropout and with it (-DDROPOUT: the kernels named *_dropout apply
// the attention probabilities' mask, element (b·NH + h, query, key) at index
// ((b·NH + h)·T + query)·T + key, as the CPU reference does). Both take the dropout
// arguments (threshold = p · 2^64, scale = 1 / (1 - p), key); the first ignores them.
#if defined(DROPOUT) && defined(WGMMA)
#define FLASH(name) name##_dropout_wg
#elif defined(DROPOUT)
#define FLASH(name) name##_dropout
#elif defined(WGMMA)
#define FLASH(name) name##_wg
#else
#define FLASH(name) name
#endif
// Rows of the other operand the backward kernels take at a time (16, 32 or 64 = a whole
// tile, where the scores of a chunk take CHUNK registers per thread); HARMAN_FLASH_CHUNK
// builds another for comparison.
#ifndef CHUNK
#define CHUNK 16
#endif
// Blocks per SM the dK/dV kernel is built for: a register cap of 128 (16-row chunks, no
// dropout), 170 (16-row chunks with dropout, which would spill at 128; wgmma's 32-row
// chunks without dropout), none for the rest and for head size 128.
#if HS > 64
#define DKDV_BLOCKS 1  // dK and dV alone take 128 registers at head size 128
#elif CHUNK == 16 && !defined(DROPOUT)
#define DKDV_BLOCKS 4
#elif CHUNK == 16 || (CHUNK == 32 && defined(WGMMA) && !defined(DROPOUT))
#define DKDV_BLOCKS 3
#else
#define DKDV_BLOCKS 1
#endif
#define ROWS 64            // rows per tile (4 warps × 16)
// Query rows per block of the kernels that own queries and stream keys and values (the
// forward pass and dQ), in tiles of ROWS: the mma.sync builds' 4 warps take one; the wgmma
// builds run two warpgroups side by side on two, so each key and value tile streamed into
// shared memory serves twice the queries (half the copies per product).
#ifdef WGMMA
#define QGROUPS 2
#else
#define QGROUPS 1
#endif
#define LN2 0.6931471805599453f

#ifdef WGMMA
// A [ROWS][HS] tile as wgmma's core matrices: 8 rows × 8 columns (128 bytes) contiguous,
// the core matrices of 8 rows next to each other along the row, then the next 8 rows.
#define TILE (ROWS * HS)
#define TILE_ALIGN 128
#define PER_WARP_SKIP 0
__device__ __forceinline__ int at(int r, int c) {
    return ((r >> 3) * (HS / 8) + (c >> 3)) * 64 + (r & 7) * 8 + (c & 7);
}
#else
// A row-major [ROWS][HS] tile, rows padded by 16 bytes so ldmatrix is free of bank conflicts.
#define RS (HS + 8)
#define TILE (ROWS * RS)
#define TILE_ALIGN 16
#define PER_WARP_SKIP 1
__device__ __forceinline__ int at(int r, int c) {
    return r * RS + c;
}
#endif
// Where the kernels keep their tiles: up to head size 64 in static __shared__ arrays, one
// per operand (every kernel's fit the 48 KB a static array may take); at head size 128 in
// dynamic shared memory, which the launch passes (compile.rs's dynamic_shared_bytes: the
// kernel's tile count × TILE bf16) and the kernel checks. SHARED_TILES(n) opens a kernel's n
// tiles, SHARED_TILE(name, n, first) names n of them from tile `first` on.
#if HS > 64
#define SHARED_TILES(n) \
    bf16* const shared_base = (bf16*)dynamic_shared((n) * TILE * (int)sizeof(bf16))
#define SHARED_TILE(name, n, first) bf16* const name = shared_base + (first) * TILE
#else
#define SHARED_TILES(n)
#define SHARED_TILE(name, n, first) __shared__ __align__(TILE_ALIGN) bf16 name[(n) * TILE]
#endif

// Two floats as a bf16 pair, the first in the low half (the lower column).
__device__ __forceinline__ u32 pack(float lo, float hi) {
    return f2bf2(lo, hi);
}

__device__ __forceinline__ u32 ld32(const bf16* p) {
    return *(const u32*)p;
}

// Rows [first, first + ROWS) of one head's slice (columns col .. col + HS) of a [B, T,
// stride] tensor into a tile, copied asynchronously (cp.async, 16 bytes a copy, rows
// past T zero-filled; one commit group): the next tile streams in while the current one is
// multiplied. Complete after landed() and a barrier.
__device__ __forceinline__ void load_rows_async(bf16* tile, const bf16* src, int b, int first,
                                                int t_len, int stride, int col) {
    const int per_row = HS / 8;
    for (int e = threadIdx.x; e < ROWS * per_row; e += blockDim.x) {
#ifdef WGMMA
        // Eight consecutive threads take eight rows' same 16 bytes: one core matrix, 128
        // contiguous bytes of shared memory, no bank conflict.
        const int r = (e & 7) | ((e / (8 * per_row)) << 3);
        const int v = (e >> 3) % per_row;
#else
        const int r = e / per_row;
        const int v = e % per_row;
#endif
        const int t = first + r;
        const bool valid = t < t_len;
        const bf16* from = valid ? src + ((i64)b * t_len + t) * stride + col + v * 8 : src;
        cp_async16(tile + at(r, v * 8), from, valid ? 16 : 0);
    }
    cp_commit();
}

// Waits until at most `pending` of this thread's copy groups are in flight; the wgmma builds
// then make the copies visible to the async proxy the tensor cores read through. A
// __syncthreads follows (the other threads' copies). The wgmma builds wait for every copy
// (pending = 0) and only then start the next tile's: the proxy fence must not wait for a
// copy still streaming in, and one barrier a tile then also tells that every warp is done
// with the buffers the next copies refill. The mma.sync builds keep a tile more in flight
// (fewer registers where they are tightest).
__device__ __forceinline__ void landed(int pending) {
    cp_wait(pending);
#ifdef WGMMA
    fence_async_shared();
#endif
}

// A query tile's log-sum-exp (times log2 e) and D = rowsum(dout * out); 0 past T.
__device__ __forceinline__ void load_stats(float* ls, float* ds, const float* lse,
                                           const float* dsum, i64 stat, int first, int t_len) {
    for (int r = threadIdx.x; r < ROWS; r += blockDim.x) {
        const int t = first + r;
        ls[r] = t < t_len ? lse[stat + t] * LOG2E : 0.0f;
        ds[r] = t < t_len ? dsum[stat + t] : 0.0f;
    }
}

// A fragments (16 rows × HS) of this warp's rows of a tile, for products that run along
// the head dimension.
__device__ __forceinline__ void a_fragments(u32 (*a)[4], const bf16* tile, int warp,
                                            int lane) {
    const int r = warp * 16 + (lane >> 2);
    const int c = (lane & 3) * 2;
#pragma unroll
    for (int kc = 0; kc < HS / 16; kc++) {
        a[kc][0] = ld32(tile + at(r, kc * 16 + c));
        a[kc][1] = ld32(tile + at(r + 8, kc * 16 + c));
        a[kc][2] = ld32(tile + at(r, kc * 16 + 8 + c));
        a[kc][3] = ld32(tile + at(r + 8, kc * 16 + 8 + c));
    }
}

// p (fp32, accumulator layout, 16 × N per warp) rounded to bf16 A fragments, 16 columns a
// fragment, for the products along the sequence.
template <int N>
__device__ __forceinline__ void to_a(u32 (*a)[4], const float (*p)[4]) {
#pragma unroll
    for (int kc = 0; kc < N / 16; kc++) {
        a[kc][0] = pack(p[2 * kc][0], p[2 * kc][1]);
        a[kc][1] = pack(p[2 * kc][2], p[2 * kc][3]);
        a[kc][2] = pack(p[2 * kc + 1][0], p[2 * kc + 1][1]);
        a[kc][3] = pack(p[2 * kc + 1][2], p[2 * kc + 1][3]);
    }
}

#ifdef WGMMA
// The products between products_begin and products_end are issued as one wgmma group:
// begin fences this thread's register writes (operands and accumulators), end waits until
// the group has completed. Nothing may touch their registers in between; `held` pins the
// accumulators the group wrote after the wait, so the compiler reads none of them earlier.
__device__ __forceinline__ void products_begin() {
    wg_fence();
}

__device__ __forceinline__ void products_end() {
    wg_commit();
    wg_wait();
}

// Closes a group of products (the wgmma issued since the last one)...
__device__ __forceinline__ void group_end() {
    wg_commit();
}

// ... and waits until at most `PENDING` groups are still in flight: their accumulators
// stay untouched, the others' are ready.
template <int PENDING>
__device__ __forceinline__ void group_wait() {
    wg_wait<PENDING>();
}

template <int N>
__device__ __forceinline__ void held(float (*acc)[4]) {
#pragma unroll
    for (int i = 0; i < N / 8; i++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            wg_hold(acc[i][e]);
        }
    }
}

// Pins A fragments (16 × K per warp) before products_begin.
template <int K>
__device__ __forceinline__ void held(u32 (*a)[4]) {
#pragma unroll
    for (int i = 0; i < K / 16; i++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            wg_hold(a[i][e]);
        }
    }
}

// acc[64 × N] = a[64 × HS] · tileᵀ over the warpgroup (tile [N][HS], K-major: the head
// dimension is wgmma's K), HS / 16 instructions of m64nNk16.
template <int N>
__device__ __forceinline__ void rows_product(float (*acc)[4], const u32 (*a)[4],
                                             const bf16* tile, int) {
#pragma unroll
    for (int kc = 0; kc < HS / 16; kc++) {
        wg_mma<N, 0>(&acc[0][0], a[kc], wg_desc(tile + at(0, kc * 16), 128, HS * 16), kc > 0);
    }
}

// acc[64 × HS] columns C0 .. HS += a[64 × 16] · rows (16 rows × HS, MN-major): the widest
// wgmma shapes that fit (128, 64, 32, 16 columns; a head size of 96 takes 64 + 32), each
// reading its columns' core matrices (SBO = 128 bytes apart along N) into its accumulators
// (4 floats per 8 columns).
template <int C0>
__device__ __forceinline__ void seq_columns(float* acc, const u32* a, const bf16* rows) {
    if constexpr (C0 < HS) {
        constexpr int W = HS - C0 >= 128 ? 128 : HS - C0 >= 64 ? 64 : HS - C0 >= 32 ? 32 : 16;
        wg_mma<W, 1>(acc + C0 / 2, a, wg_desc(rows + at(0, C0), HS * 16, 128), 1);
        seq_columns<C0 + W>(acc, a, rows);
    }
}

// acc[64 × HS] += a[64 × N] · tile (tile [N][HS], MN-major: the sequence is wgmma's K, read
// transposed), N / 16 steps of m64n(HS)k16 (HS / 16 in all: one wgmma, or a few where HS is
// not a wgmma width).
template <int N>
__device__ __forceinline__ void seq_product(float (*acc)[4], const u32 (*a)[4],
                                            const bf16* tile, int) {
#pragma unroll
    for (int kc = 0; kc < N / 16; kc++) {
        seq_columns<0>(&acc[0][0], a[kc], tile + at(kc * 16, 0));
    }
}
// acc[64 × N] = rows[64 × HS] · tileᵀ over the warpgroup with both operands in shared memory
// (the block's own 64 rows as A, N rows of the other operand as B, both K-major), HS / 16
// instructions of m64nNk16.
template <int N>
__device__ __forceinline__ void shared_product(float (*acc)[4], const bf16* rows,
                                               const bf16* tile) {
#pragma unroll
    for (int kc = 0; kc < HS / 16; kc++) {
        wg_mma_ss<N>(&acc[0][0], wg_desc(rows + at(0, kc * 16), 128, HS * 16),
                     wg_desc(tile + at(0, kc * 16), 128, HS * 16), kc > 0);
    }
}
// A per-query statistic (times `scale`) for this thread's queries of a chunk: query0 + nt · 8
// + j, j < 2 (the accumulator layout's columns); 0 past T.
template <int N>
__device__ __forceinline__ void load_chunk_stats(float (*out)[2], const float* stats, i64 stat,
                                                 int query0, int t_len, float scale) {
#pragma unroll
    for (int nt = 0; nt < N / 8; nt++) {
#pragma unroll
        for (int j = 0; j < 2; j++) {
            const int query = query0 + nt * 8 + j;
            out[nt][j] = query < t_len ? stats[stat + query] * scale : 0.0f;
        }
    }
}

#else
// mma.sync is synchronous: no groups to mark, no registers to pin.
__device__ __forceinline__ void products_begin() {}

__device__ __forceinline__ void products_end() {}

__device__ __forceinline__ void group_end() {}

template <int PENDING>
__device__ __forceinline__ void group_wait() {}

template <int N>
__device__ __forceinline__ void held(float (*)[4]) {}

template <int K>
__device__ __forceinline__ void held(u32 (*)[4]) {}

// acc[16 × N] = a[16 × HS] · tileᵀ (tile row-major [N][HS], N = ROWS or a 16-row chunk of
// one): scores against every row of the tile. One ldmatrix.x4 gives the B fragments of two
// 8-row column tiles.
template <int N>
__device__ __forceinline__ void rows_product(float (*acc)[4], const u32 (*a)[4],
                                             const bf16* tile, int lane) {
#pragma unroll
    for (int nt = 0; nt < N / 8; nt++) {
        acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
    }
    const int row = (lane & 7) + ((lane >> 4) << 3);
    const int col = ((lane >> 3) & 1) * 8;
#pragma unroll
    for (int nt2 = 0; nt2 < N / 16; nt2++) {
#pragma unroll
        for (int kc = 0; kc < HS / 16; kc++) {
            u32 b[4];
            ldsm4(b, tile + at(nt2 * 16 + row, kc * 16 + col));
            mma(acc[2 * nt2], a[kc], b[0], b[1]);
            mma(acc[2 * nt2 + 1], a[kc], b[2], b[3]);
        }
    }
}

// acc[16 × HS] += a[16 × N] · tile (tile row-major [N][HS], read transposed by ldmatrix);
// a the bf16 A fragments of the probabilities (to_a).
template <int N>
__device__ __forceinline__ void seq_product(float (*acc)[4], const u32 (*a)[4],
                                            const bf16* tile, int lane) {
    const int row = (lane & 7) + ((lane >> 3) & 1) * 8;
    const int col = (lane >> 4) * 8;
#pragma unroll
    for (int kc = 0; kc < N / 16; kc++) {
#pragma unroll
        for (int dt2 = 0; dt2 < HS / 16; dt2++) {
            u32 b[4];
            ldsm4_t(b, tile + at(kc * 16 + row, dt2 * 16 + col));
            mma(acc[2 * dt2], a[kc], b[0], b[1]);
            mma(acc[2 * dt2 + 1], a[kc], b[2], b[3]);
        }
    }
}
#endif

// Sets the scores (or probabilities) s of this warp's rows row0, row0 + 8 against keys
// key0 .. key0 + N (accumulator layout) to `value` where the key comes after the row or
// lies past T. Only the diagonal tile and one that runs past T need it.
template <int N>
__device__ __forceinline__ void mask_causal(float (*s)[4], int row0, int key0, int t_len,
                                            int lane, float value) {
    const int q4 = lane & 3;
#pragma unroll
    for (int nt = 0; nt < N / 8; nt++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int row = row0 + (e >> 1) * 8;
            const int key = key0 + nt * 8 + q4 * 2 + (e & 1);
            if (key > row || key >= t_len) {
                s[nt][e] = value;
            }
        }
    }
}

// The dropout factor of attention probability (query, key) of head blockIdx.y: the CPU
// reference's element ((b·NH + h)·T + query)·T + key.
__device__ __forceinline__ float attention_drop(unsigned long long threshold, float scale,
                                                unsigned long long key_seed, int t_len,
                                                unsigned long long query,
                                                unsigned long long key) {
    return drop_factor(threshold, scale, key_seed,
                       ((unsigned long long)blockIdx.y * t_len + query) * t_len + key);
}

// A probability the backward kernels recompute: 2^(s·scale·log2e − lse·log2e) (`lse2` the
// row's log-sum-exp times log2 e), 0 where `masked` and the key comes after the query or the
// query lies past T.
__device__ __forceinline__ float recomputed_p(float s, float sl2, float lse2, bool masked,
                                              int query, int key, int t_len) {
    const float p = ex2(fmaf(s, sl2, -lse2));
    return masked && (query < key || query >= t_len) ? 0.0f : p;
}

// Writes this warp's 16 × HS accumulator rows (times `scale`) as bf16 to rows `row0` and
// `row0 + 8` of a [B, T, stride] tensor at column `col`, skipping rows past T.
__device__ __forceinline__ void store_rows(bf16* dst, const float (*acc)[4], const float* scale,
                                           int b, int row0, int t_len, int stride, int col,
                                           int lane) {
    const int q4 = lane & 3;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int row = row0 + 8 * i;
        if (row < t_len) {
            bf16* o = dst + ((i64)b * t_len + row) * stride + col;
#pragma unroll
            for (int dt = 0; dt < HS / 8; dt++) {
                *(u32*)(o + dt * 8 + q4 * 2) =
                    pack(acc[dt][2 * i] * scale[i], acc[dt][2 * i + 1] * scale[i]);
            }
        }
    }
}

#if !defined(WGMMA) && !defined(DROPOUT)
// The backward pass's first step, shared by every build and by attention.cu's kernels (so
// only the plain build has it): D[b, h, t] = Σ_d dout[b, t, h, d] · out[b, t, h, d]; one thread
// per (b, t, h), so neighbouring threads read neighbouring head slices, 16 bytes at a time.
extern "C" __global__ void flash_backward_d(float* dsum, const bf16* dout, const bf16* out,
                                            int b_len, int t_len, int nh) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (i64)b_len * nh * t_len) {
        return;
    }
    const int h = (int)(i % nh);
    const int t = (int)((i / nh) % t_len);
    const int b = (int)(i / ((i64)t_len * nh));
    const i64 row = i * HS;
    float s = 0.0f;
    if (aligned16(dout + row, out + row)) {
        float x[8];
        float y[8];
#pragma unroll
        for (int v = 0; v < HS / 8; v++) {
            unpack8(x, *(const uint4*)(dout + row + v * 8));
            unpack8(y, *(const uint4*)(out + row + v * 8));
#pragma unroll
            for (int k = 0; k < 8; k++) {
                s += x[k] * y[k];
            }
        }
    } else {
        for (int d = 0; d < HS; d++) {
            s += bf2f(dout[row + d]) * bf2f(out[row + d]);
        }
    }
    dsum[((i64)b * nh + h) * t_len + t] = s;
}
#endif

// grid (ceil(T / (64 · QGROUPS)), B * NH), 128 · QGROUPS threads; block x handles
// query tile (tiles - 1 - x) of 64 · QGROUPS rows, the longest rows first; warpgroup g
// its 64 rows from 64 g.
extern "C" __global__ void __launch_bounds__(128 * QGROUPS)
    FLASH(flash_forward)(bf16* out, float* lse, const bf16* qkv, int t_len, int nh,
                         unsigned long long threshold, float drop_scale,
                         unsigned long long drop_key) {
    SHARED_TILES(QGROUPS + 4);
    SHARED_TILE(qs, QGROUPS, 0);
    SHARED_TILE(ks, 2, QGROUPS);  // two buffers: current and next tile
    SHARED_TILE(vs, 2, QGROUPS + 2);
    const int c = nh * HS;
    const int stride = 3 * c;
    const int qt = gridDim.x - 1 - blockIdx.x;
    const int b = blockIdx.y / nh;
    const int h = blockIdx.y % nh;
#if QGROUPS > 1
    const int group = threadIdx.x >> 7;
    const int warp = (threadIdx.x >> 5) & 3;
#else
    const int group = 0;
    const int warp = threadIdx.x >> 5;
#endif
    const int lane = threadIdx.x & 31;
    const int q4 = lane & 3;
    const float sl2 = rsqrtf((float)HS) * LOG2E;
    // This warpgroup's diagonal key tile, and the block's last.
    const int mine = qt * QGROUPS + group;
    const int last = QGROUPS > 1 ? min(qt * QGROUPS + QGROUPS - 1, (t_len - 1) / ROWS) : qt;
#pragma unroll
    for (int g = 0; g < QGROUPS; g++) {
        load_rows_async(qs + g * TILE, qkv, b, (qt * QGROUPS + g) * ROWS, t_len, stride,
                        h * HS);
    }
    load_rows_async(ks, qkv, b, 0, t_len, stride, c + h * HS);
    load_rows_async(vs, qkv, b, 0, t_len, stride, 2 * c + h * HS);
#ifndef WGMMA
    landed(2);  // the queries; the first keys and values may still be in flight
    __syncthreads();
    u32 qa[HS / 16][4];
    a_fragments(qa, qs, warp, lane);
#endif
    const int row0 = mine * ROWS + warp * 16 + (lane >> 2);
    float o[HS / 8][4];
#pragma unroll
    for (int dt = 0; dt < HS / 8; dt++) {
        o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    }
    float m[2] = {NEG_INF, NEG_INF};  // running row maxima of the raw scores
    float l[2] = {0.0f, 0.0f};
    for (int kt = 0; kt <= last; kt++) {
        const bf16* kb = ks + (kt & 1) * TILE;
        const bf16* vb = vs + (kt & 1) * TILE;
        const int next = ((kt + 1) & 1) * TILE;
#ifdef WGMMA
        landed(0);
        __syncthreads();
        if (kt < last) {
            load_rows_async(ks + next, qkv, b, (kt + 1) * ROWS, t_len, stride, c + h * HS);
            load_rows_async(vs + next, qkv, b, (kt + 1) * ROWS, t_len, stride, 2 * c + h * HS);
        }
#if QGROUPS > 1
        if (kt > mine) {
            continue;  // past this warpgroup's diagonal (uniform in the warpgroup)
        }
#endif
#else
        if (kt < last) {
            load_rows_async(ks + next, qkv, b, (kt + 1) * ROWS, t_len, stride, c + h * HS);
            load_rows_async(vs + next, qkv, b, (kt + 1) * ROWS, t_len, stride, 2 * c + h * HS);
            landed(2);
        } else {
            landed(0);
        }
        __syncthreads();
#endif
        float s[ROWS / 8][4];
        products_begin();
#ifdef WGMMA
        shared_product<ROWS>(s, qs + group * TILE, kb);  // the queries stay in shared memory
#else
        rows_product<ROWS>(s, qa, kb, lane);
#endif
        products_end();
        held<ROWS>(s);
        if (kt == mine || (kt + 1) * ROWS > t_len) {  // a uniform branch
            mask_causal<ROWS>(s, row0, kt * ROWS, t_len, lane, NEG_INF);
        }
        float mx[2] = {m[0], m[1]};
#pragma unroll
        for (int nt = 0; nt < ROWS / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
            }
        }
        // base = the scaled maximum: p = 2^(s·scale·log2e - base), one FFMA and one ex2.
        float base[2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
            mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
            mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
            base[i] = mx[i] == NEG_INF ? 0.0f : mx[i] * sl2;
            const float corr = ex2(m[i] * sl2 - base[i]);
            m[i] = mx[i];
            l[i] *= corr;
#pragma unroll
            for (int dt = 0; dt < HS / 8; dt++) {
                o[dt][2 * i] *= corr;
                o[dt][2 * i + 1] *= corr;
            }
        }
#pragma unroll
        for (int nt = 0; nt < ROWS / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float p = ex2(fmaf(s[nt][e], sl2, -base[e >> 1]));
                s[nt][e] = p;
                l[e >> 1] += p;  // the normalizer counts every probability, dropped or not
            }
        }
#ifdef DROPOUT
#pragma unroll
        for (int nt = 0; nt < ROWS / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const unsigned long long query = row0 + (e >> 1) * 8;
                const unsigned long long key = kt * ROWS + nt * 8 + q4 * 2 + (e & 1);
                s[nt][e] *= attention_drop(threshold, drop_scale, drop_key, t_len, query, key);
            }
        }
#endif
        u32 pa[ROWS / 16][4];
        to_a<ROWS>(pa, s);
        held<HS>(o);  // the rescaled accumulators and the operand, written before the fence
        held<ROWS>(pa);
        products_begin();
        seq_product<ROWS>(o, pa, vb, lane);
        products_end();
        held<HS>(o);
#ifndef WGMMA
        __syncthreads();  // this tile's buffers are refilled next iteration
#endif
    }
    float inv[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
        inv[i] = 1.0f / l[i];
        const int row = row0 + 8 * i;
        if (q4 == 0 && row < t_len) {
            lse[((i64)b * nh + h) * t_len + row] = (m[i] * sl2 + log2f(l[i])) * LN2;
        }
    }
    store_rows(out, o, inv, b, row0, t_len, c, h * HS, lane);
}

#ifdef WGMMA
// grid (ceil(T / 64), B * NH), 128 threads; block x owns key tile x and loops over the query
// tiles that see it; writes dK and dV into dqkv. The wgmma build keeps the block's keys and
// values in shared memory as the A operands of S = K·Qᵀ and dP = V·dOᵀ (no registers for
// them, so more blocks fit on an SM), streams the query tiles through two buffers, and reads
// each chunk's statistics (log-sum-exp, D) from global memory while its products run:
// 48 KB of shared memory in all.
extern "C" __global__ void __launch_bounds__(128, DKDV_BLOCKS) FLASH(flash_backward_dkdv)(
    bf16* dqkv, const bf16* qkv, const bf16* dout, const float* lse, const float* dsum,
    int t_len, int nh, unsigned long long threshold, float drop_scale,
    unsigned long long drop_key) {
    SHARED_TILES(6);
    SHARED_TILE(kts, 1, 0);
    SHARED_TILE(vts, 1, 1);
    SHARED_TILE(qs, 2, 2);  // two buffers: current and next tile
    SHARED_TILE(dos, 2, 4);
    const int c = nh * HS;
    const int stride = 3 * c;
    const int kt = blockIdx.x;
    const int b = blockIdx.y / nh;
    const int h = blockIdx.y % nh;
    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const int q4 = lane & 3;
    const float scale = rsqrtf((float)HS);
    const float sl2 = scale * LOG2E;
    const int key0 = kt * ROWS + warp * 16 + (lane >> 2);
    const i64 stat = ((i64)b * nh + h) * t_len;
    const int tiles = (t_len + ROWS - 1) / ROWS;
    float dk[HS / 8][4];
    float dv[HS / 8][4];
#pragma unroll
    for (int dt = 0; dt < HS / 8; dt++) {
        dk[dt][0] = dk[dt][1] = dk[dt][2] = dk[dt][3] = 0.0f;
        dv[dt][0] = dv[dt][1] = dv[dt][2] = dv[dt][3] = 0.0f;
    }
    load_rows_async(kts, qkv, b, kt * ROWS, t_len, stride, c + h * HS);
    load_rows_async(vts, qkv, b, kt * ROWS, t_len, stride, 2 * c + h * HS);
    // Query tile qt goes to buffer (qt - kt) & 1; tile qt + 1 streams in while qt is
    // multiplied.
    load_rows_async(qs, qkv, b, kt * ROWS, t_len, stride, h * HS);
    load_rows_async(dos, dout, b, kt * ROWS, t_len, c, h * HS);
    for (int qt = kt; qt < tiles; qt++) {
        const int buf = (qt - kt) & 1;
        landed(0);
        __syncthreads();
        if (qt + 1 < tiles) {
            const int next = (buf ^ 1) * TILE;
            load_rows_async(qs + next, qkv, b, (qt + 1) * ROWS, t_len, stride, h * HS);
            load_rows_async(dos + next, dout, b, (qt + 1) * ROWS, t_len, c, h * HS);
        }
        const bf16* qb = qs + buf * TILE;
        const bf16* db = dos + buf * TILE;
        // Only the diagonal tile and one that runs past T need masks (uniform).
        const bool masked = qt == kt || (qt + 1) * ROWS > t_len;
#pragma unroll
        for (int ch = 0; ch < ROWS / CHUNK; ch++) {
            const bf16* qc = qb + at(ch * CHUNK, 0);
            const bf16* dc = db + at(ch * CHUNK, 0);
            // S and dP as two groups: P is computed while dP is in flight, dS while dV's
            // product is.
            float st[CHUNK / 8][4];
            float dpt[CHUNK / 8][4];
            products_begin();
            shared_product<CHUNK>(st, kts, qc);
            group_end();
            shared_product<CHUNK>(dpt, vts, dc);
            group_end();
            // This thread's queries' log-sum-exps, read while the products run (and their D
            // while dV's runs).
            const int query0 = qt * ROWS + ch * CHUNK + q4 * 2;  // + nt · 8 + (e & 1)
            float l2[CHUNK / 8][2];
            load_chunk_stats<CHUNK>(l2, lse, stat, query0, t_len, LOG2E);
            group_wait<1>();  // the scores; dP may still be in flight
            held<CHUNK>(st);
#ifdef DROPOUT
            unsigned int kept = 0;  // bit 4·nt + e: element (nt, e) survives the dropout
#endif
#pragma unroll
            for (int nt = 0; nt < CHUNK / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = key0 + (e >> 1) * 8;
                    const int query = query0 + nt * 8 + (e & 1);
#ifdef DROPOUT
                    const float z =
                        attention_drop(threshold, drop_scale, drop_key, t_len, query, key);
                    kept |= (z != 0.0f ? 1u : 0u) << (4 * nt + e);
#endif
                    st[nt][e] =
                        recomputed_p(st[nt][e], sl2, l2[nt][e & 1], masked, query, key, t_len);
                }
            }
            u32 pa[CHUNK / 16][4];
#ifdef DROPOUT
            {
                // dV takes the dropped probabilities P∘Z.
                float pz[CHUNK / 8][4];
#pragma unroll
                for (int nt = 0; nt < CHUNK / 8; nt++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        pz[nt][e] = (kept >> (4 * nt + e)) & 1u ? st[nt][e] * drop_scale : 0.0f;
                    }
                }
                to_a<CHUNK>(pa, pz);
            }
#else
            to_a<CHUNK>(pa, st);
#endif
            held<CHUNK>(pa);
            held<HS>(dv);
            products_begin();
            seq_product<CHUNK>(dv, pa, dc, lane);  // dV += (P∘Z)·dO
            group_end();
            float dd[CHUNK / 8][2];
            load_chunk_stats<CHUNK>(dd, dsum, stat, query0, t_len, 1.0f);
            group_wait<1>();  // dP; dV's product may still be in flight
            held<CHUNK>(dpt);
#pragma unroll
            for (int nt = 0; nt < CHUNK / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float d = dd[nt][e & 1];
#ifdef DROPOUT
                    // dS = P ∘ (Z ∘ dP' − D).
                    const float z = (kept >> (4 * nt + e)) & 1u ? drop_scale : 0.0f;
                    dpt[nt][e] = st[nt][e] * (z * dpt[nt][e] - d);
#else
                    dpt[nt][e] = st[nt][e] * (dpt[nt][e] - d);
#endif
                }
            }
            u32 dsa[CHUNK / 16][4];
            to_a<CHUNK>(dsa, dpt);
            held<CHUNK>(dsa);
            held<HS>(dk);
            products_begin();
            seq_product<CHUNK>(dk, dsa, qc, lane);  // dK += dS·Q
            group_end();
            group_wait<0>();
            held<HS>(dv);
            held<HS>(dk);
        }
    }
    const float one[2] = {1.0f, 1.0f};
    const float sc[2] = {scale, scale};
    store_rows(dqkv, dk, sc, b, key0, t_len, stride, c + h * HS, lane);
    store_rows(dqkv, dv, one, b, key0, t_len, stride, 2 * c + h * HS, lane);
}
#else
// grid (ceil(T / 64), B * NH), 128 threads; block x owns key tile x and loops over the query
// tiles that see it; writes dK and dV into dqkv.
extern "C" __global__ void __launch_bounds__(128, DKDV_BLOCKS) FLASH(flash_backward_dkdv)(
    bf16* dqkv, const bf16* qkv, const bf16* dout, const float* lse, const float* dsum,
    int t_len, int nh, unsigned long long threshold, float drop_scale,
    unsigned long long drop_key) {
    SHARED_TILES(4);
    SHARED_TILE(qs, 2, 0);  // two buffers: current and next tile
    SHARED_TILE(dos, 2, 2);
    __shared__ float ls[2 * ROWS];
    __shared__ float ds[2 * ROWS];
    const int c = nh * HS;
    const int stride = 3 * c;
    const int kt = blockIdx.x;
    const int b = blockIdx.y / nh;
    const int h = blockIdx.y % nh;
    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const int q4 = lane & 3;
    const float scale = rsqrtf((float)HS);
    const float sl2 = scale * LOG2E;
    // This block's keys and values, staged through the query tiles' buffers.
    load_rows_async(qs, qkv, b, kt * ROWS, t_len, stride, c + h * HS);
    load_rows_async(dos, qkv, b, kt * ROWS, t_len, stride, 2 * c + h * HS);
    landed(0);
    __syncthreads();
    u32 ka[HS / 16][4];
    u32 va[HS / 16][4];
    a_fragments(ka, qs, warp, lane);
    a_fragments(va, dos, warp, lane);
    const int key0 = kt * ROWS + warp * 16 + (lane >> 2);
    float dk[HS / 8][4];
    float dv[HS / 8][4];
#pragma unroll
    for (int dt = 0; dt < HS / 8; dt++) {
        dk[dt][0] = dk[dt][1] = dk[dt][2] = dk[dt][3] = 0.0f;
        dv[dt][0] = dv[dt][1] = dv[dt][2] = dv[dt][3] = 0.0f;
    }
    const i64 stat = ((i64)b * nh + h) * t_len;
    const int tiles = (t_len + ROWS - 1) / ROWS;
    __syncthreads();  // the staging buffers are refilled below
    // Query tile qt goes to buffer (qt - kt) & 1, its statistics beside it.
    for (int qt = kt; qt < tiles && qt <= kt + 1; qt++) {
        const int buf = (qt - kt) & 1;
        load_rows_async(qs + buf * TILE, qkv, b, qt * ROWS, t_len, stride, h * HS);
        load_rows_async(dos + buf * TILE, dout, b, qt * ROWS, t_len, c, h * HS);
        load_stats(ls + buf * ROWS, ds + buf * ROWS, lse, dsum, stat, qt * ROWS, t_len);
    }
    for (int qt = kt; qt < tiles; qt++) {
        const int buf = (qt - kt) & 1;
        landed(qt + 1 < tiles ? 2 : 0);
        __syncthreads();
        const bf16* qb = qs + buf * TILE;
        const bf16* db = dos + buf * TILE;
        const float* lb = ls + buf * ROWS;
        const float* sb = ds + buf * ROWS;
        // CHUNK queries at a time: the scores of a chunk live in CHUNK registers, not 64.
        const bool diag = qt == kt;
        const bool tail = (qt + 1) * ROWS > t_len;
#pragma unroll
        for (int ch = 0; ch < ROWS / CHUNK; ch++) {
            if (diag && (ch + 1) * CHUNK <= warp * 16) {
                continue;  // every query of the chunk comes before this warp's keys
            }
            const bf16* qc = qb + at(ch * CHUNK, 0);
            const bf16* dc = db + at(ch * CHUNK, 0);
            // Only a chunk that meets the diagonal and a tile that runs past T need masks
            // (uniform).
            const bool masked = (diag && ch * CHUNK < warp * 16 + 16) || tail;
            float st[CHUNK / 8][4];
            float dpt[CHUNK / 8][4];
            rows_product<CHUNK>(st, ka, qc, lane);
            rows_product<CHUNK>(dpt, va, dc, lane);
#pragma unroll
            for (int nt = 0; nt < CHUNK / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int qi = ch * CHUNK + nt * 8 + q4 * 2 + (e & 1);
                    const int key = key0 + (e >> 1) * 8;
                    const int query = qt * ROWS + qi;
                    const float p =
                        recomputed_p(st[nt][e], sl2, lb[qi], masked, query, key, t_len);
#ifdef DROPOUT
                    // dS = P ∘ (Z ∘ dP' − D) and dV takes the dropped P ∘ Z.
                    const float z =
                        attention_drop(threshold, drop_scale, drop_key, t_len, query, key);
                    dpt[nt][e] = p * (z * dpt[nt][e] - sb[qi]);
                    st[nt][e] = p * z;
#else
                    dpt[nt][e] = p * (dpt[nt][e] - sb[qi]);
                    st[nt][e] = p;
#endif
                }
            }
            u32 pa[CHUNK / 16][4];
            u32 dsa[CHUNK / 16][4];
            to_a<CHUNK>(pa, st);
            seq_product<CHUNK>(dv, pa, dc, lane);
            to_a<CHUNK>(dsa, dpt);  // after the first product: fewer live registers
            seq_product<CHUNK>(dk, dsa, qc, lane);
        }
        __syncthreads();  // this tile's buffers take tile qt + 2 now
        if (qt + 2 < tiles) {
            load_rows_async(qs + buf * TILE, qkv, b, (qt + 2) * ROWS, t_len, stride, h * HS);
            load_rows_async(dos + buf * TILE, dout, b, (qt + 2) * ROWS, t_len, c, h * HS);
            load_stats(ls + buf * ROWS, ds + buf * ROWS, lse, dsum, stat, (qt + 2) * ROWS, t_len);
        }
    }
    const float one[2] = {1.0f, 1.0f};
    const float sc[2] = {scale, scale};
    store_rows(dqkv, dk, sc, b, key0, t_len, stride, c + h * HS, lane);
    store_rows(dqkv, dv, one, b, key0, t_len, stride, 2 * c + h * HS, lane);
}
#endif

// grid (ceil(T / (64 · QGROUPS)), B * NH), 128 · QGROUPS threads; block x owns query tile
// (tiles - 1 - x) of 64 · QGROUPS rows (warpgroup g its 64 rows from 64 g) and loops over the
// key tiles it sees; writes dQ into dqkv.
extern "C" __global__ void __launch_bounds__(128 * QGROUPS) FLASH(flash_backward_dq)(
    bf16* dqkv, const bf16* qkv, const bf16* dout, const float* lse, const float* dsum,
    int t_len, int nh, unsigned long long threshold, float drop_scale,
    unsigned long long drop_key) {
    SHARED_TILES(4);
    SHARED_TILE(ks, 2, 0);  // two buffers: current and next tile
    SHARED_TILE(vs, 2, 2);
    const int c = nh * HS;
    const int stride = 3 * c;
    const int qt = gridDim.x - 1 - blockIdx.x;
    const int b = blockIdx.y / nh;
    const int h = blockIdx.y % nh;
#if QGROUPS > 1
    const int group = threadIdx.x >> 7;
    const int warp = (threadIdx.x >> 5) & 3;
#else
    const int group = 0;
    const int warp = threadIdx.x >> 5;
#endif
    const int lane = threadIdx.x & 31;
    const float scale = rsqrtf((float)HS);
    const float sl2 = scale * LOG2E;
    // This warpgroup's diagonal key tile, and the block's last.
    const int mine = qt * QGROUPS + group;
    const int last = QGROUPS > 1 ? min(qt * QGROUPS + QGROUPS - 1, (t_len - 1) / ROWS) : qt;
    // This block's queries and output gradients (a tile each per warpgroup), staged through
    // the key tiles' buffers.
#pragma unroll
    for (int g = 0; g < QGROUPS; g++) {
        const int first = (qt * QGROUPS + g) * ROWS;
        load_rows_async(ks + g * TILE, qkv, b, first, t_len, stride, h * HS);
        load_rows_async(vs + g * TILE, dout, b, first, t_len, c, h * HS);
    }
    landed(0);
    __syncthreads();
    u32 qa[HS / 16][4];
    u32 da[HS / 16][4];
    a_fragments(qa, ks + group * TILE, warp, lane);
    a_fragments(da, vs + group * TILE, warp, lane);
    const int row0 = mine * ROWS + warp * 16 + (lane >> 2);
    const i64 stat = ((i64)b * nh + h) * t_len;
    float l2[2];
    float dd[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int row = row0 + 8 * i;
        l2[i] = row < t_len ? lse[stat + row] * LOG2E : 0.0f;
        dd[i] = row < t_len ? dsum[stat + row] : 0.0f;
    }
    float dq[HS / 8][4];
#pragma unroll
    for (int dt = 0; dt < HS / 8; dt++) {
        dq[dt][0] = dq[dt][1] = dq[dt][2] = dq[dt][3] = 0.0f;
    }
    __syncthreads();  // the staging buffers are refilled below
    // Key tile kt goes to buffer kt & 1.
#ifdef WGMMA
    const auto load_tile = [&](int kt) {
        const int buf = (kt & 1) * TILE;
        load_rows_async(ks + buf, qkv, b, kt * ROWS, t_len, stride, c + h * HS);
        load_rows_async(vs + buf, qkv, b, kt * ROWS, t_len, stride, 2 * c + h * HS);
    };
    load_tile(0);
    for (int kt = 0; kt <= last; kt++) {
        const int buf = kt & 1;
        landed(0);
        __syncthreads();
        if (kt < last) {
            load_tile(kt + 1);
        }
#if QGROUPS > 1
        if (kt > mine) {
            continue;  // past this warpgroup's diagonal (uniform in the warpgroup)
        }
#endif
#else
    for (int kt = 0; kt <= qt && kt <= 1; kt++) {
        load_rows_async(ks + kt * TILE, qkv, b, kt * ROWS, t_len, stride, c + h * HS);
        load_rows_async(vs + kt * TILE, qkv, b, kt * ROWS, t_len, stride, 2 * c + h * HS);
    }
    for (int kt = 0; kt <= qt; kt++) {
        const int buf = kt & 1;
        landed(kt < qt ? 2 : 0);
        __syncthreads();
#endif
        const bf16* kb = ks + buf * TILE;
        const bf16* vb = vs + buf * TILE;
        // CHUNK keys at a time: the scores of a chunk live in CHUNK registers, not 64.
        const bool diag = kt == mine;
        const bool tail = (kt + 1) * ROWS > t_len;
#pragma unroll
        for (int ch = 0; ch < ROWS / CHUNK; ch++) {
            if (PER_WARP_SKIP && diag && ch * CHUNK >= warp * 16 + 16) {
                continue;  // every key of the chunk comes after this warp's rows
            }
            const bf16* kc = kb + at(ch * CHUNK, 0);
            const bf16* vc = vb + at(ch * CHUNK, 0);
            float s[CHUNK / 8][4];
            float dp[CHUNK / 8][4];
            held<HS>(qa);
            held<HS>(da);
            products_begin();
            rows_product<CHUNK>(s, qa, kc, lane);
            group_end();
            rows_product<CHUNK>(dp, da, vc, lane);
            group_end();
            group_wait<1>();  // the scores; dP may still be in flight
            held<CHUNK>(s);
#pragma unroll
            for (int nt = 0; nt < CHUNK / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    s[nt][e] = ex2(fmaf(s[nt][e], sl2, -l2[e >> 1]));
                }
            }
            // Uniform: a chunk that meets the diagonal (or, without the skip, lies past it),
            // or a tile past T.
            if ((diag && (!PER_WARP_SKIP || (ch + 1) * CHUNK > warp * 16)) || tail) {
                mask_causal<CHUNK>(s, row0, kt * ROWS + ch * CHUNK, t_len, lane, 0.0f);
            }
            group_wait<0>();
            held<CHUNK>(dp);
#pragma unroll
            for (int nt = 0; nt < CHUNK / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
#ifdef DROPOUT
                    const unsigned long long query = row0 + (e >> 1) * 8;
                    const unsigned long long key =
                        kt * ROWS + ch * CHUNK + nt * 8 + (lane & 3) * 2 + (e & 1);
                    const float z =
                        attention_drop(threshold, drop_scale, drop_key, t_len, query, key);
                    s[nt][e] *= z * dp[nt][e] - dd[e >> 1];
#else
                    s[nt][e] *= dp[nt][e] - dd[e >> 1];
#endif
                }
            }
            u32 dsa[CHUNK / 16][4];
            to_a<CHUNK>(dsa, s);
            held<CHUNK>(dsa);
            products_begin();
            seq_product<CHUNK>(dq, dsa, kc, lane);
            products_end();
            held<HS>(dq);
        }
#ifndef WGMMA
        __syncthreads();  // this tile's buffers take tile kt + 2 now
        if (kt + 2 <= qt) {
            load_rows_async(ks + buf * TILE, qkv, b, (kt + 2) * ROWS, t_len, stride,
                            c + h * HS);
            load_rows_async(vs + buf * TILE, qkv, b, (kt + 2) * ROWS, t_len, stride,
                            2 * c + h * HS);
        }
#endif
    }
    const float sc[2] = {scale, scale};
    store_rows(dqkv, dq, sc, b, row0, t_len, stride, h * HS, lane);
}
