// Causal multi-head attention on the CUDA cores (the second implementation: flash.cu's
// tensor-core kernels run by default; HARMAN_ATTENTION=simt selects these, and the tests
// check both). Flash-attention style: no T×T matrix ever exists in memory.
// qkv is [B, T, 3C] (head h's query at columns h*HS, key at C + h*HS, value at 2C + h*HS),
// out [B, T, C]. The forward pass keeps a running max and sum per query (online softmax)
// and saves only the log-sum-exp per (b, h, t); the backward pass recomputes the
// probabilities from it: D = rowsum(dout * out) first (flash.cu's flash_backward_d, which
// serves both), then one kernel where each thread owns a key and accumulates its dK and dV
// over the queries that see it, one where each thread owns a query and accumulates its dQ.
// Every sum runs in a fixed order (no atomics). HS (the head size) is a compile-time
// constant (-DHS=64), so per-thread vectors live in registers (two of them: built for head
// sizes up to 64; 128 would spill). Tiles of TILE rows are staged through shared memory as
// fp32.

#ifndef HS
#define HS 64
#endif
#define TILE 64
#define BWD_TILE 32
#define ROW (HS + 2)  // bf16 row stride of per-thread rows in shared memory (conflict-free)

// Loads rows [first, first + rows) of one head's slice (columns col .. col + HS) of a
// [B, T, stride] tensor — qkv (stride 3C) or the attention output's gradient (stride C) —
// as fp32 into tile[rows][HS]; rows past T are zero.
__device__ __forceinline__ void load_tile(float* tile, const bf16* src, int b, int first,
                                          int rows, int t_len, int stride, int col) {
    for (int e = threadIdx.x; e < rows * HS; e += blockDim.x) {
        const int r = e / HS;
        const int d = e % HS;
        const int t = first + r;
        tile[e] = t < t_len ? bf2f(src[((i64)b * t_len + t) * stride + col + d]) : 0.0f;
    }
}

// grid (ceil(T / TILE), B * NH), block TILE threads: thread = one query row.
extern "C" __global__ void __launch_bounds__(TILE) attention_forward(
    bf16* out, float* lse, const bf16* qkv, int t_len, int nh) {
    __shared__ float ks[TILE * HS];
    __shared__ float vs[TILE * HS];
    const int c = nh * HS;
    const int b = blockIdx.y / nh;
    const int h = blockIdx.y % nh;
    const int qi = blockIdx.x * TILE + threadIdx.x;
    const float scale = rsqrtf((float)HS);
    float q[HS];
    float acc[HS];
    if (qi < t_len) {
        const bf16* qrow = qkv + ((i64)b * t_len + qi) * 3 * c + h * HS;
#pragma unroll
        for (int d = 0; d < HS; d++) {
            q[d] = bf2f(qrow[d]) * scale;
        }
    }
#pragma unroll
    for (int d = 0; d < HS; d++) {
        acc[d] = 0.0f;
    }
    float m = NEG_INF;
    float l = 0.0f;
    for (int kt = 0; kt <= (int)blockIdx.x; kt++) {
        __syncthreads();
        load_tile(ks, qkv, b, kt * TILE, TILE, t_len, 3 * c, c + h * HS);
        load_tile(vs, qkv, b, kt * TILE, TILE, t_len, 3 * c, 2 * c + h * HS);
        __syncthreads();
        if (qi < t_len) {
            const int last = min(TILE - 1, qi - kt * TILE);
            for (int j = 0; j <= last; j++) {
                float s = 0.0f;
#pragma unroll
                for (int d = 0; d < HS; d++) {
                    s += q[d] * ks[j * HS + d];
                }
                if (s > m) {
                    const float corr = expf(m - s);
                    l *= corr;
#pragma unroll
                    for (int d = 0; d < HS; d++) {
                        acc[d] *= corr;
                    }
                    m = s;
                }
                const float p = expf(s - m);
                l += p;
#pragma unroll
                for (int d = 0; d < HS; d++) {
                    acc[d] += p * vs[j * HS + d];
                }
            }
        }
    }
    if (qi < t_len) {
        bf16* orow = out + ((i64)b * t_len + qi) * c + h * HS;
        const float inv = 1.0f / l;
#pragma unroll
        for (int d = 0; d < HS; d++) {
            orow[d] = f2bf(acc[d] * inv);
        }
        lse[((i64)b * nh + h) * t_len + qi] = m + logf(l);
    }
}

// Copies this thread's row (HS values of bf16, at `src`) into shared row storage.
__device__ __forceinline__ void own_row(bf16* dst, const bf16* src, bool valid) {
    for (int d = 0; d < HS; d++) {
        dst[d] = valid ? src[d] : (bf16)0;
    }
}

// grid (ceil(T / TILE), B * NH), block TILE threads: thread = one key row j; loops over the
// queries i >= j in tiles of BWD_TILE; writes dK, dV of row j into dqkv.
extern "C" __global__ void __launch_bounds__(TILE) attention_backward_dkdv(
    bf16* dqkv, const bf16* qkv, const bf16* dout, const float* lse, const float* dsum,
    int t_len, int nh) {
    __shared__ float qs[BWD_TILE * HS];
    __shared__ float dos[BWD_TILE * HS];
    __shared__ float ls[BWD_TILE];
    __shared__ float ds_[BWD_TILE];
    __shared__ bf16 kown[TILE * ROW];
    __shared__ bf16 vown[TILE * ROW];
    const int c = nh * HS;
    const int b = blockIdx.y / nh;
    const int h = blockIdx.y % nh;
    const int j = blockIdx.x * TILE + threadIdx.x;
    const bool valid = j < t_len;
    const float scale = rsqrtf((float)HS);
    const bf16* kv_row = qkv + ((i64)b * t_len + (valid ? j : 0)) * 3 * c;
    bf16* kme = kown + threadIdx.x * ROW;
    bf16* vme = vown + threadIdx.x * ROW;
    own_row(kme, kv_row + c + h * HS, valid);
    own_row(vme, kv_row + 2 * c + h * HS, valid);
    float dk[HS];
    float dv[HS];
#pragma unroll
    for (int d = 0; d < HS; d++) {
        dk[d] = 0.0f;
        dv[d] = 0.0f;
    }
    const i64 stat = ((i64)b * nh + h) * t_len;
    for (int first = blockIdx.x * TILE; first < t_len; first += BWD_TILE) {
        __syncthreads();
        load_tile(qs, qkv, b, first, BWD_TILE, t_len, 3 * c, h * HS);
        load_tile(dos, dout, b, first, BWD_TILE, t_len, c, h * HS);
        for (int r = threadIdx.x; r < BWD_TILE; r += blockDim.x) {
            const int t = first + r;
            ls[r] = t < t_len ? lse[stat + t] : 0.0f;
            ds_[r] = t < t_len ? dsum[stat + t] : 0.0f;
        }
        __syncthreads();
        if (!valid) {
            continue;
        }
        for (int r = 0; r < BWD_TILE; r++) {
            const int i = first + r;
            if (i < j || i >= t_len) {
                continue;
            }
            float s = 0.0f;
            float dp = 0.0f;
#pragma unroll 8
            for (int d = 0; d < HS; d++) {
                s += qs[r * HS + d] * bf2f(kme[d]);
                dp += dos[r * HS + d] * bf2f(vme[d]);
            }
            const float p = expf(s * scale - ls[r]);
            const float dsc = p * (dp - ds_[r]) * scale;
#pragma unroll
            for (int d = 0; d < HS; d++) {
                dv[d] += p * dos[r * HS + d];
                dk[d] += dsc * qs[r * HS + d];
            }
        }
    }
    if (valid) {
        bf16* drow = dqkv + ((i64)b * t_len + j) * 3 * c;
#pragma unroll
        for (int d = 0; d < HS; d++) {
            drow[c + h * HS + d] = f2bf(dk[d]);
            drow[2 * c + h * HS + d] = f2bf(dv[d]);
        }
    }
}

// grid (ceil(T / TILE), B * NH), block TILE threads: thread = one query row i; loops over
// the keys j <= i in tiles of BWD_TILE; writes dQ of row i into dqkv.
extern "C" __global__ void __launch_bounds__(TILE) attention_backward_dq(
    bf16* dqkv, const bf16* qkv, const bf16* dout, const float* lse, const float* dsum,
    int t_len, int nh) {
    __shared__ float ks[BWD_TILE * HS];
    __shared__ float vs[BWD_TILE * HS];
    __shared__ bf16 qown[TILE * ROW];
    __shared__ bf16 doown[TILE * ROW];
    const int c = nh * HS;
    const int b = blockIdx.y / nh;
    const int h = blockIdx.y % nh;
    const int i = blockIdx.x * TILE + threadIdx.x;
    const bool valid = i < t_len;
    const float scale = rsqrtf((float)HS);
    bf16* qme = qown + threadIdx.x * ROW;
    bf16* dome = doown + threadIdx.x * ROW;
    own_row(qme, qkv + ((i64)b * t_len + (valid ? i : 0)) * 3 * c + h * HS, valid);
    own_row(dome, dout + ((i64)b * t_len + (valid ? i : 0)) * c + h * HS, valid);
    const i64 stat = ((i64)b * nh + h) * t_len;
    const float li = valid ? lse[stat + i] : 0.0f;
    const float di = valid ? dsum[stat + i] : 0.0f;
    float dq[HS];
#pragma unroll
    for (int d = 0; d < HS; d++) {
        dq[d] = 0.0f;
    }
    const int end = min(t_len, (int)(blockIdx.x + 1) * TILE);
    for (int first = 0; first < end; first += BWD_TILE) {
        __syncthreads();
        load_tile(ks, qkv, b, first, BWD_TILE, t_len, 3 * c, c + h * HS);
        load_tile(vs, qkv, b, first, BWD_TILE, t_len, 3 * c, 2 * c + h * HS);
        __syncthreads();
        if (!valid) {
            continue;
        }
        for (int r = 0; r < BWD_TILE; r++) {
            const int j = first + r;
            if (j > i) {
                break;
            }
            float s = 0.0f;
            float dp = 0.0f;
#pragma unroll 8
            for (int d = 0; d < HS; d++) {
                s += bf2f(qme[d]) * ks[r * HS + d];
                dp += bf2f(dome[d]) * vs[r * HS + d];
            }
            const float p = expf(s * scale - li);
            const float dsc = p * (dp - di) * scale;
#pragma unroll
            for (int d = 0; d < HS; d++) {
                dq[d] += dsc * ks[r * HS + d];
            }
        }
    }
    if (valid) {
        bf16* drow = dqkv + ((i64)b * t_len + i) * 3 * c + h * HS;
#pragma unroll
        for (int d = 0; d < HS; d++) {
            drow[d] = f2bf(dq[d]);
        }
    }
}
