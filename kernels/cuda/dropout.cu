// Inverted dropout on bf16 (the embeddings and both residual branches of every block; the
// attention probabilities' dropout is inside flash.cu): out[i] = inp[i] · drop_factor(i),
// the mask a pure function of (key, i), so the backward pass applies the same one to the
// gradients. In place when out == inp.

// grid over n threads.
extern "C" __global__ void dropout(bf16* out, const bf16* inp, i64 n,
                                   unsigned long long threshold, float scale,
                                   unsigned long long key) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = f2bf(bf2f(inp[i]) * drop_factor(threshold, scale, key, (unsigned long long)i));
    }
}
