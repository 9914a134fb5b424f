// Token + position embedding. Forward: out[b,t,:] = wte[tok] + wpe[t]. Backward without
// atomics: the position gradient sums over the batch in order; the token gradient sums each
// token's positions in the order the host lists them (a CSR of token → positions built from
// the batch's ids), so it is deterministic.

extern "C" __global__ void encoder_forward(bf16* out, const int* tokens, const bf16* wte,
                                           const bf16* wpe, int n, int t_len, int c) {
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (i64)n * c) {
        return;
    }
    const int row = (int)(i / c);
    const int ch = (int)(i % c);
    const int t = row % t_len;
    out[i] = f2bf(bf2f(wte[(i64)tokens[row] * c + ch]) + bf2f(wpe[(i64)t * c + ch]));
}

// dwpe[t, :] += Σ_b dout[b, t, :]
extern "C" __global__ void encoder_backward_wpe(float* dwpe, const bf16* dout, int b_len,
                                                int t_len, int c) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= t_len * c) {
        return;
    }
    float s = 0.0f;
    for (int b = 0; b < b_len; b++) {
        s += bf2f(dout[(i64)b * t_len * c + i]);
    }
    dwpe[i] += s;
}

// One block per distinct token: dwte[token, :] += Σ dout[row, :] over its rows
// (positions[offsets[k] .. offsets[k+1]]).
extern "C" __global__ void encoder_backward_wte(float* dwte, const bf16* dout,
                                                const int* token_of, const int* offsets,
                                                const int* positions, int c) {
    const int k = blockIdx.x;
    const int token = token_of[k];
    const int from = offsets[k];
    const int to = offsets[k + 1];
    for (int ch = threadIdx.x; ch < c; ch += blockDim.x) {
        float s = 0.0f;
        for (int p = from; p < to; p++) {
            s += bf2f(dout[(i64)positions[p] * c + ch]);
        }
        dwte[(i64)token * c + ch] += s;
    }
}
