// GELU, tanh approximation (GPT-2's): forward and backward, elementwise on bf16. Each
// thread handles 8 consecutive values, with 16-byte loads and stores when the buffers are
// aligned (they are in the model: every activation starts at a multiple of 8 elements).

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)

__device__ __forceinline__ float gelu(float x) {
    const float u = GELU_K * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

__device__ __forceinline__ float gelu_grad(float x) {
    const float u = GELU_K * (x + 0.044715f * x * x * x);
    const float th = tanhf(u);
    const float sech2 = 1.0f - th * th;
    return 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
}

// grid over ceil(n / 8) threads.
extern "C" __global__ void gelu_forward(bf16* out, const bf16* inp, i64 n) {
    const i64 i = ((i64)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i >= n) {
        return;
    }
    if (i + 8 <= n && aligned16(out, inp)) {
        float x[8];
        unpack8(x, *(const uint4*)(inp + i));
#pragma unroll
        for (int k = 0; k < 8; k++) {
            x[k] = gelu(x[k]);
        }
        *(uint4*)(out + i) = pack8(x);
        return;
    }
    for (i64 j = i; j < n && j < i + 8; j++) {
        out[j] = f2bf(gelu(bf2f(inp[j])));
    }
}

// dinp = gelu'(inp) * dout (dinp may be dout: in place); grid over ceil(n / 8) threads.
extern "C" __global__ void gelu_backward(bf16* dinp, const bf16* inp, const bf16* dout, i64 n) {
    const i64 i = ((i64)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i >= n) {
        return;
    }
    if (i + 8 <= n && aligned16(dinp, inp, dout)) {
        float x[8];
        float d[8];
        unpack8(x, *(const uint4*)(inp + i));
        unpack8(d, *(const uint4*)(dout + i));
#pragma unroll
        for (int k = 0; k < 8; k++) {
            d[k] *= gelu_grad(x[k]);
        }
        *(uint4*)(dinp + i) = pack8(d);
        return;
    }
    for (i64 j = i; j < n && j < i + 8; j++) {
        dinp[j] = f2bf(gelu_grad(bf2f(inp[j])) * bf2f(dout[j]));
    }
}
