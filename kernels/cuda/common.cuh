// Shared by every kernel file (prepended to each source, after ptx.cuh, before NVRTC
// compiles it, so the kernels need no CUDA headers): bf16 storage as raw 16-bit words
// (ptx.cuh converts with round-to-nearest-even, the rounding `half::bf16::from_f32` does on
// the CPU), warp and block sums in a fixed order (so every result is bit-identical run to
// run), and the index type.

typedef long long i64;
#define NEG_INF __int_as_float(0xff800000)
#define LOG2E 1.4426950408889634f

__device__ __forceinline__ float bf2f(bf16 x) {
    return __uint_as_float(((unsigned int)x) << 16);
}

// SplitMix64's output function of (key, i), as kernels/src/cpu/dropout.rs's `mix`: the
// dropout masks, a pure function of the key and the element's index.
__device__ __forceinline__ unsigned long long mix64(unsigned long long key, unsigned long long i) {
    unsigned long long z = key ^ (i * 0x9e3779b97f4a7c15ull);
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Inverted dropout's factor for element i: 0 when mix64(key, i) < threshold (p · 2^64),
// else scale = 1 / (1 - p).
__device__ __forceinline__ float drop_factor(unsigned long long threshold, float scale,
                                             unsigned long long key, unsigned long long i) {
    return mix64(key, i) < threshold ? 0.0f : scale;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    }
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// total. `scratch` holds 32 floats of shared memory.
__device__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) {
        scratch[warp] = v;
    }
    __syncthreads();
    const int warps = blockDim.x >> 5;
    v = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

__device__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) {
        scratch[warp] = v;
    }
    __syncthreads();
    const int warps = blockDim.x >> 5;
    v = lane < warps ? scratch[lane] : NEG_INF;
    return warp_max(v);
}

// Eight bf16 values in one 16-byte word (the vectorized paths' unit of load and store).
__device__ __forceinline__ void unpack8(float* f, uint4 v) {
    const unsigned int w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        f[2 * k] = bf2f((bf16)(w[k] & 0xffffu));
        f[2 * k + 1] = bf2f((bf16)(w[k] >> 16));
    }
}

__device__ __forceinline__ uint4 pack8(const float* f) {
    return make_uint4(f2bf2(f[0], f[1]), f2bf2(f[2], f[3]), f2bf2(f[4], f[5]),
                      f2bf2(f[6], f[7]));
}

// Whether every pointer given is 16-byte aligned (the vectorized paths need it).
__device__ __forceinline__ bool aligned16(const void* a, const void* b = 0, const void* c = 0,
                                          const void* d = 0) {
    return ((((unsigned long long)a) | ((unsigned long long)b) | ((unsigned long long)c) |
             ((unsigned long long)d)) &
            15ull) == 0;
}
