// AdamW on fp32 master weights (and the bf16 copy the forward pass reads), the gradients'
// global norm (sum of squares in a fixed grid, then the blocks' sums added in order), and
// the fp32 → bf16 cast.

// The same update as the CPU's kernels/src/cpu/adamw.rs, with the gradient scaled by
// `grad_scale` (clipping) on the way in. c1, c2: the bias corrections 1 - beta^t.
extern "C" __global__ void adamw(float* master, bf16* params, const float* grads, float* m,
                                 float* v, i64 n, float lr, float beta1, float beta2,
                                 float eps, float weight_decay, float c1, float c2,
                                 float grad_scale) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    const float g = grads[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float p = master[i];
    const float mhat = mi / c1;
    const float vhat = vi / c2;
    const float next = p - lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * p);
    master[i] = next;
    params[i] = f2bf(next);
}

// partial[block] = Σ x² over a grid-stride loop (gridDim.x fixed by the caller).
extern "C" __global__ void sum_squares(float* partial, const float* x, i64 n) {
    __shared__ float scratch[32];
    float s = 0.0f;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (i64)gridDim.x * blockDim.x) {
        s += x[i] * x[i];
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = s;
    }
}

// out[0] = Σ partial[0..n] (one block).
extern "C" __global__ void sum_all(float* out, const float* partial, int n) {
    __shared__ float scratch[32];
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        s += partial[i];
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) {
        out[0] = s;
    }
}

extern "C" __global__ void cast_to_bf16(bf16* out, const float* inp, i64 n) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = f2bf(inp[i]);
    }
}

extern "C" __global__ void cast_to_f32(float* out, const bf16* inp, i64 n) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = bf2f(inp[i]);
    }
}

// out[row, :] += bias (after a GEMM without a bias epilogue); one thread per 8 values of a
// row, 16 bytes at a time when c is a multiple of 8 and the buffers are aligned; grid over
// ceil(n * c / 8) threads.
extern "C" __global__ void add_bias(bf16* out, const bf16* bias, i64 n, int c) {
    const i64 v = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (v * 8 >= n * c) {
        return;
    }
    if ((c & 7) == 0 && aligned16(out, bias)) {
        const int cv = c >> 3;
        const int col = (int)(v % cv) * 8;
        float o[8];
        float b[8];
        unpack8(o, *(const uint4*)(out + v * 8));
        unpack8(b, *(const uint4*)(bias + col));
#pragma unroll
        for (int k = 0; k < 8; k++) {
            o[k] += b[k];
        }
        *(uint4*)(out + v * 8) = pack8(o);
        return;
    }
    for (i64 i = v * 8; i < n * c && i < v * 8 + 8; i++) {
        out[i] = f2bf(bf2f(out[i]) + bf2f(bias[i % c]));
    }
}
