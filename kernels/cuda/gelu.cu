// GELU, tanh approximation (GPT-2's): forward and backward, elementwise on bf16.

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)

extern "C" __global__ void gelu_forward(bf16* out, const bf16* inp, i64 n) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    const float x = bf2f(inp[i]);
    const float u = GELU_K * (x + 0.044715f * x * x * x);
    out[i] = f2bf(0.5f * x * (1.0f + tanhf(u)));
}

// dinp = gelu'(inp) * dout (dinp may be dout: in place).
extern "C" __global__ void gelu_backward(bf16* dinp, const bf16* inp, const bf16* dout, i64 n) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    const float x = bf2f(inp[i]);
    const float u = GELU_K * (x + 0.044715f * x * x * x);
    const float th = tanhf(u);
    const float sech2 = 1.0f - th * th;
    const float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] = f2bf(grad * bf2f(dout[i]));
}
