// LayerNorm (eps 1e-5), fused with the residual add before it. One warp per row; the row's
// statistics are summed in fp32 in a fixed lane order. The weight and bias gradients are
// column sums over rows: each block sums a fixed chunk of rows into `partial`, and
// `sum_partials` adds the chunks in order (no atomics, so results repeat bit for bit).

#define LN_EPS 1e-5f

// 16-byte vectors (8 bf16) of a row one lane handles in registers: the forward pass keeps
// rows up to 32 · 8 · LN_VMAX = 1024 wide there between its passes (wider ones are re-read,
// from L1), and layernorm_backward_fused takes rows up to that width (GPT-2 small and
// medium; wider rows take the two separate kernels).
#define LN_VMAX 4

// Vector v of x = a (+ b, rounded to bf16 and stored to `xr`, when `xb` is not null).
__device__ __forceinline__ uint4 ln_input(const bf16* xa, const bf16* xb, bf16* xr, int v) {
    const uint4 av = ((const uint4*)xa)[v];
    if (xb == 0) {
        return av;
    }
    float x[8];
    float y[8];
    unpack8(x, av);
    unpack8(y, ((const uint4*)xb)[v]);
#pragma unroll
    for (int k = 0; k < 8; k++) {
        x[k] += y[k];
    }
    const uint4 sum = pack8(x);
    ((uint4*)xr)[v] = sum;
    return sum;
}

// f(v, vector v of x) over this lane's vectors of the row, in order: from `cache` when the row
// is held in registers, else from `x` in memory.
template <class F>
__device__ __forceinline__ void for_row(bool cached, const uint4* cache, const bf16* x, int cv,
                                        int lane, F f) {
    if (cached) {
#pragma unroll
        for (int j = 0; j < LN_VMAX; j++) {
            if (lane + 32 * j < cv) {
                f(lane + 32 * j, cache[j]);
            }
        }
    } else {
        for (int v = lane; v < cv; v += 32) {
            f(v, ((const uint4*)x)[v]);
        }
    }
}

// x = a (+ b when b is not null; the sum is stored to `residual` as bf16), then
// out = (x - mean) * rstd * weight + bias; mean and rstd saved per row. Rows whose width is
// a multiple of 8 (with aligned buffers) move 16 bytes per load and, up to 1024 wide, stay
// in registers between the passes (else a lane's later passes re-read the values it wrote
// or read itself, from L1).
extern "C" __global__ void residual_layernorm_forward(bf16* residual, bf16* out, float* mean,
                                                      float* rstd, const bf16* a,
                                                      const bf16* b, const bf16* weight,
                                                      const bf16* bias, int n, int c) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= n) {
        return;
    }
    const bf16* xa = a + (i64)row * c;
    bf16* xr = residual + (i64)row * c;
    bf16* o = out + (i64)row * c;
    const bool vec = (c & 7) == 0 && aligned16(xa, b, weight, bias) && aligned16(xr, o);
    float s = 0.0f;
    if (vec) {
        const int cv = c >> 3;
        const bf16* xb = b != 0 ? b + (i64)row * c : 0;
        const bool cached = cv <= 32 * LN_VMAX;
        uint4 cache[LN_VMAX];
        float x[8];
        if (cached) {
#pragma unroll
            for (int j = 0; j < LN_VMAX; j++) {
                if (lane + 32 * j < cv) {
                    cache[j] = ln_input(xa, xb, xr, lane + 32 * j);
                    unpack8(x, cache[j]);
#pragma unroll
                    for (int k = 0; k < 8; k++) {
                        s += x[k];
                    }
                }
            }
        } else {
            for (int v = lane; v < cv; v += 32) {
                unpack8(x, ln_input(xa, xb, xr, v));
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    s += x[k];
                }
            }
        }
        if (b != 0) {
            xa = xr;
        }
        const float m = warp_sum(s) / c;
        float var = 0.0f;
        for_row(cached, cache, xa, cv, lane, [&](int, uint4 xv) {
            unpack8(x, xv);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                var += (x[k] - m) * (x[k] - m);
            }
        });
        const float r = rsqrtf(warp_sum(var) / c + LN_EPS);
        for_row(cached, cache, xa, cv, lane, [&](int v, uint4 xv) {
            float w[8];
            float y[8];
            unpack8(x, xv);
            unpack8(w, ((const uint4*)weight)[v]);
            unpack8(y, ((const uint4*)bias)[v]);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                x[k] = (x[k] - m) * r * w[k] + y[k];
            }
            ((uint4*)o)[v] = pack8(x);
        });
        if (lane == 0) {
            mean[row] = m;
            rstd[row] = r;
        }
        return;
    }
    if (b != 0) {
        const bf16* xb = b + (i64)row * c;
        for (int i = lane; i < c; i += 32) {
            const bf16 x = f2bf(bf2f(xa[i]) + bf2f(xb[i]));
            xr[i] = x;
            s += bf2f(x);
        }
        __syncwarp();
        xa = xr;
    } else {
        for (int i = lane; i < c; i += 32) {
            s += bf2f(xa[i]);
        }
    }
    const float m = warp_sum(s) / c;
    float v = 0.0f;
    for (int i = lane; i < c; i += 32) {
        const float d = bf2f(xa[i]) - m;
        v += d * d;
    }
    const float r = rsqrtf(warp_sum(v) / c + LN_EPS);
    for (int i = lane; i < c; i += 32) {
        o[i] = f2bf((bf2f(xa[i]) - m) * r * bf2f(weight[i]) + bf2f(bias[i]));
    }
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

// dinp (+)= rstd * (w*dout - mean(w*dout) - norm * mean(w*dout*norm)); `accumulate` adds to
// dinp (the residual stream's gradient) instead of overwriting it. 16-byte loads as in the
// forward pass when the width and buffers allow.
extern "C" __global__ void layernorm_backward_input(bf16* dinp, const bf16* dout,
                                                    const bf16* inp, const bf16* weight,
                                                    const float* mean, const float* rstd,
                                                    int n, int c, int accumulate) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= n) {
        return;
    }
    const bf16* dy = dout + (i64)row * c;
    const bf16* x = inp + (i64)row * c;
    bf16* dx = dinp + (i64)row * c;
    const float m = mean[row];
    const float r = rstd[row];
    float s1 = 0.0f;
    float s2 = 0.0f;
    if ((c & 7) == 0 && aligned16(dy, x, weight, dx)) {
        const int cv = c >> 3;
        float xv[8];
        float wv[8];
        float dv[8];
        for (int v = lane; v < cv; v += 32) {
            unpack8(xv, ((const uint4*)x)[v]);
            unpack8(wv, ((const uint4*)weight)[v]);
            unpack8(dv, ((const uint4*)dy)[v]);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const float g = wv[k] * dv[k];
                s1 += g;
                s2 += g * (xv[k] - m) * r;
            }
        }
        s1 = warp_sum(s1) / c;
        s2 = warp_sum(s2) / c;
        float old[8];
        for (int v = lane; v < cv; v += 32) {
            unpack8(xv, ((const uint4*)x)[v]);
            unpack8(wv, ((const uint4*)weight)[v]);
            unpack8(dv, ((const uint4*)dy)[v]);
            if (accumulate) {
                unpack8(old, ((const uint4*)dx)[v]);
            }
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const float g = wv[k] * dv[k];
                float d = (g - s1 - (xv[k] - m) * r * s2) * r;
                if (accumulate) {
                    d += old[k];
                }
                dv[k] = d;
            }
            ((uint4*)dx)[v] = pack8(dv);
        }
        return;
    }
    for (int i = lane; i < c; i += 32) {
        const float norm = (bf2f(x[i]) - m) * r;
        const float g = bf2f(weight[i]) * bf2f(dy[i]);
        s1 += g;
        s2 += g * norm;
    }
    s1 = warp_sum(s1) / c;
    s2 = warp_sum(s2) / c;
    for (int i = lane; i < c; i += 32) {
        const float norm = (bf2f(x[i]) - m) * r;
        const float g = bf2f(weight[i]) * bf2f(dy[i]);
        float d = (g - s1 - norm * s2) * r;
        if (accumulate) {
            d += bf2f(dx[i]);
        }
        dx[i] = f2bf(d);
    }
}

// layernorm_backward_input and layernorm_backward_params in one pass over dout and inp:
// block k owns rows [k · rows_per_chunk, ...) and writes partial[k, 0:c] = Σ norm · dout,
// partial[k, c:2c] = Σ dout over them (each lane keeps its columns' sums in registers over
// its warp's rows, in row order; the warps' sums are added in warp order), then
// sum_partials adds the chunks in order, as for the separate kernels. Rows a multiple of 8
// wide, at most 32 · 8 · LN_VMAX, 16-byte aligned buffers. grid (chunks), 256 threads.
extern "C" __global__ void __launch_bounds__(256) layernorm_backward_fused(
    bf16* dinp, float* partial, const bf16* dout, const bf16* inp, const bf16* weight,
    const float* mean, const float* rstd, int n, int c, int rows_per_chunk, int accumulate) {
    __shared__ float red[2 * 32 * 8 * LN_VMAX];
    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const int warps = blockDim.x >> 5;
    const int cv = c >> 3;
    const int from = blockIdx.x * rows_per_chunk;
    const int to = min(n, from + rows_per_chunk);
    float dw[LN_VMAX][8];
    float db[LN_VMAX][8];
#pragma unroll
    for (int j = 0; j < LN_VMAX; j++) {
#pragma unroll
        for (int k = 0; k < 8; k++) {
            dw[j][k] = 0.0f;
            db[j][k] = 0.0f;
        }
    }
    float xv[8];
    float wv[8];
    float dv[8];
    float old[8];
    for (int row = from + warp; row < to; row += warps) {
        const uint4* x = (const uint4*)(inp + (i64)row * c);
        const uint4* dy = (const uint4*)(dout + (i64)row * c);
        uint4* dx = (uint4*)(dinp + (i64)row * c);
        const float m = mean[row];
        const float r = rstd[row];
        float s1 = 0.0f;
        float s2 = 0.0f;
#pragma unroll
        for (int j = 0; j < LN_VMAX; j++) {
            const int v = lane + 32 * j;
            if (v < cv) {
                unpack8(xv, x[v]);
                unpack8(wv, ((const uint4*)weight)[v]);
                unpack8(dv, dy[v]);
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    const float norm = (xv[k] - m) * r;
                    const float g = wv[k] * dv[k];
                    s1 += g;
                    s2 += g * norm;
                    dw[j][k] += norm * dv[k];
                    db[j][k] += dv[k];
                }
            }
        }
        s1 = warp_sum(s1) / c;
        s2 = warp_sum(s2) / c;
#pragma unroll
        for (int j = 0; j < LN_VMAX; j++) {
            const int v = lane + 32 * j;
            if (v < cv) {
                unpack8(xv, x[v]);
                unpack8(wv, ((const uint4*)weight)[v]);
                unpack8(dv, dy[v]);
                if (accumulate) {
                    unpack8(old, dx[v]);
                }
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    float d = (wv[k] * dv[k] - s1 - (xv[k] - m) * r * s2) * r;
                    if (accumulate) {
                        d += old[k];
                    }
                    dv[k] = d;
                }
                dx[v] = pack8(dv);
            }
        }
    }
    // The warps' column sums, added in warp order.
    for (int w = 0; w < warps; w++) {
        if (warp == w) {
#pragma unroll
            for (int j = 0; j < LN_VMAX; j++) {
                const int v = lane + 32 * j;
                if (v < cv) {
#pragma unroll
                    for (int k = 0; k < 8; k++) {
                        const int i = v * 8 + k;
                        red[i] = (w == 0 ? 0.0f : red[i]) + dw[j][k];
                        red[c + i] = (w == 0 ? 0.0f : red[c + i]) + db[j][k];
                    }
                }
            }
        }
        __syncthreads();
    }
    float* p = partial + (i64)blockIdx.x * 2 * c;
    for (int i = threadIdx.x; i < 2 * c; i += blockDim.x) {
        p[i] = red[i];
    }
}

// partial[chunk, 0:c] = Σ norm*dout, partial[chunk, c:2c] = Σ dout over the chunk's rows.
// With `pairs` (c even, buffers 4-byte aligned) a thread sums two neighbouring columns with
// 4-byte loads (each column's sum in the same row order as one at a time): grid
// (ceil(c / 2 / blockDim.x), chunks); else one column a thread: (ceil(c / blockDim.x), chunks).
extern "C" __global__ void layernorm_backward_params(float* partial, const bf16* dout,
                                                     const bf16* inp, const float* mean,
                                                     const float* rstd, int n, int c,
                                                     int rows_per_chunk, int pairs) {
    const int from = blockIdx.y * rows_per_chunk;
    const int to = min(n, from + rows_per_chunk);
    if (pairs) {
        const int ch = 2 * (blockIdx.x * blockDim.x + threadIdx.x);
        if (ch >= c) {
            return;
        }
        float dw0 = 0.0f;
        float dw1 = 0.0f;
        float db0 = 0.0f;
        float db1 = 0.0f;
#pragma unroll 4
        for (int row = from; row < to; row++) {
            const unsigned int dy = *(const unsigned int*)(dout + (i64)row * c + ch);
            const unsigned int x = *(const unsigned int*)(inp + (i64)row * c + ch);
            const float m = mean[row];
            const float r = rstd[row];
            const float dy0 = bf2f((bf16)(dy & 0xffffu));
            const float dy1 = bf2f((bf16)(dy >> 16));
            dw0 += (bf2f((bf16)(x & 0xffffu)) - m) * r * dy0;
            dw1 += (bf2f((bf16)(x >> 16)) - m) * r * dy1;
            db0 += dy0;
            db1 += dy1;
        }
        float* p = partial + (i64)blockIdx.y * 2 * c;
        p[ch] = dw0;
        p[ch + 1] = dw1;
        p[c + ch] = db0;
        p[c + ch + 1] = db1;
        return;
    }
    const int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) {
        return;
    }
    float dw = 0.0f;
    float db = 0.0f;
    for (int row = from; row < to; row++) {
        const float dy = bf2f(dout[(i64)row * c + ch]);
        dw += (bf2f(inp[(i64)row * c + ch]) - mean[row]) * rstd[row] * dy;
        db += dy;
    }
    partial[(i64)blockIdx.y * 2 * c + ch] = dw;
    partial[(i64)blockIdx.y * 2 * c + c + ch] = db;
}

// partial[chunk, 0:c] = Σ x over the chunk's rows (a bias gradient).
extern "C" __global__ void column_sums(float* partial, const bf16* x, int n, int c,
                                       int rows_per_chunk) {
    const int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) {
        return;
    }
    const int from = blockIdx.y * rows_per_chunk;
    const int to = min(n, from + rows_per_chunk);
    float s = 0.0f;
    for (int row = from; row < to; row++) {
        s += bf2f(x[(i64)row * c + ch]);
    }
    partial[(i64)blockIdx.y * c + ch] = s;
}

// dst[i] += Σ_k partial[k * stride + i], k = 0 .. chunks-1 in order.
extern "C" __global__ void sum_partials(float* dst, const float* partial, int chunks,
                                        int stride, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    float s = 0.0f;
    for (int k = 0; k < chunks; k++) {
        s += partial[(i64)k * stride + i];
    }
    dst[i] += s;
}
