// Softmax + cross-entropy + the logits' gradient in one kernel, one block per row: the loss
// -log softmax(logits)[target] over the real vocabulary V, and (when dloss != 0) the
// logits overwritten in place by (softmax - onehot(target)) * dloss, the padded columns
// V..Vp by 0. Nothing of size V is written besides the gradient itself. The row is read
// once for its maximum and sum together (online softmax: each thread rescales its running
// sum when its maximum grows; the block combines the pairs in a fixed order), 16 bytes per
// access when Vp is a multiple of 8; those reads stay in registers (up to CL_VMAX vectors a
// thread: Vp ≤ 65536 at 1024 threads) for writing the gradient, so the row is not read
// again. Other widths and alignments read it twice.

#define CL_VMAX 8

// Adds logit x (in log2 units: x · log2 e) to a running (max, sum of 2^(· - max)).
__device__ __forceinline__ void online(float& mx, float& s, float x) {
    if (x > mx) {
        s = s * ex2(mx - x) + 1.0f;
        mx = x;
    } else {
        s += ex2(x - mx);
    }
}

extern "C" __global__ void fused_classifier(bf16* logits, float* losses, const int* targets,
                                            int v, int vp, float dloss) {
    __shared__ float scratch[32];
    const int row = blockIdx.x;
    bf16* x = logits + (i64)row * vp;
    const bool vec = (vp & 7) == 0 && aligned16(x);
    float mx = NEG_INF;
    float s = 0.0f;
    // The row's vectors this thread reads, kept for the gradient.
    const bool cached = vec && vp / 8 <= CL_VMAX * (int)blockDim.x;
    uint4 cache[CL_VMAX];
    if (cached) {
#pragma unroll
        for (int j = 0; j < CL_VMAX; j++) {
            const int i = threadIdx.x + j * blockDim.x;
            if (i < vp / 8) {
                cache[j] = ((const uint4*)x)[i];
                float f[8];
                unpack8(f, cache[j]);
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    if (i * 8 + k < v) {
                        online(mx, s, f[k] * LOG2E);
                    }
                }
            }
        }
    } else if (vec) {
        float f[8];
        for (int i = threadIdx.x; i < vp / 8; i += blockDim.x) {
            unpack8(f, ((const uint4*)x)[i]);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                if (i * 8 + k < v) {
                    online(mx, s, f[k] * LOG2E);
                }
            }
        }
    } else {
        for (int i = threadIdx.x; i < v; i += blockDim.x) {
            online(mx, s, bf2f(x[i]) * LOG2E);
        }
    }
    const float bmx = block_max(mx, scratch);
    s = mx == NEG_INF ? 0.0f : s * ex2(mx - bmx);
    s = block_sum(s, scratch);
    const float lse2 = bmx + log2f(s);  // log2 of the softmax denominator
    const float lse = lse2 * 0.6931471805599453f;
    const int target = targets[row];
    if (threadIdx.x == 0) {
        losses[row] = lse - bf2f(x[target]);
    }
    __syncthreads();  // the target's logit is read before it is overwritten
    if (dloss == 0.0f) {
        return;
    }
    if (cached) {
#pragma unroll
        for (int j = 0; j < CL_VMAX; j++) {
            const int i = threadIdx.x + j * blockDim.x;
            if (i < vp / 8) {
                float f[8];
                unpack8(f, cache[j]);
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    const int col = i * 8 + k;
                    f[k] = col < v ? (ex2(f[k] * LOG2E - lse2) - (col == target ? 1.0f : 0.0f)) *
                                         dloss
                                   : 0.0f;
                }
                ((uint4*)x)[i] = pack8(f);
            }
        }
        return;
    }
    if (vec) {
        float f[8];
        for (int i = threadIdx.x; i < vp / 8; i += blockDim.x) {
            unpack8(f, ((const uint4*)x)[i]);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const int col = i * 8 + k;
                f[k] = col < v
                           ? (ex2(f[k] * LOG2E - lse2) - (col == target ? 1.0f : 0.0f)) * dloss
                           : 0.0f;
            }
            ((uint4*)x)[i] = pack8(f);
        }
        return;
    }
    for (int i = threadIdx.x; i < vp; i += blockDim.x) {
        float g = 0.0f;
        if (i < v) {
            g = (ex2(bf2f(x[i]) * LOG2E - lse2) - (i == target ? 1.0f : 0.0f)) * dloss;
        }
        x[i] = f2bf(g);
    }
}
