// Softmax + cross-entropy + the logits' gradient in one kernel, one block per row: the loss
// -log softmax(logits)[target] over the real vocabulary V, and (when dloss != 0) the
// logits overwritten in place by (softmax - onehot(target)) * dloss, the padded columns
// V..Vp by 0. Nothing of size V is written besides the gradient itself.

extern "C" __global__ void fused_classifier(bf16* logits, float* losses, const int* targets,
                                            int v, int vp, float dloss) {
    __shared__ float scratch[32];
    const int row = blockIdx.x;
    bf16* x = logits + (i64)row * vp;
    float mx = NEG_INF;
    for (int i = threadIdx.x; i < v; i += blockDim.x) {
        mx = fmaxf(mx, bf2f(x[i]));
    }
    mx = block_max(mx, scratch);
    float s = 0.0f;
    for (int i = threadIdx.x; i < v; i += blockDim.x) {
        s += expf(bf2f(x[i]) - mx);
    }
    s = block_sum(s, scratch);
    const float lse = mx + logf(s);
    const int target = targets[row];
    if (threadIdx.x == 0) {
        losses[row] = lse - bf2f(x[target]);
    }
    __syncthreads();  // the target's logit is read before it is overwritten
    if (dloss != 0.0f) {
        for (int i = threadIdx.x; i < vp; i += blockDim.x) {
            float g = 0.0f;
            if (i < v) {
                g = (expf(bf2f(x[i]) - lse) - (i == target ? 1.0f : 0.0f)) * dloss;
            }
            x[i] = f2bf(g);
        }
    }
}
