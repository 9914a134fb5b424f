// Every inline-PTX instruction the kernels use, each behind a small function: the special
// function unit's 2^x, the hardware bf16 conversions, the tensor-core MMA, ldmatrix and the
// asynchronous global→shared copies. Prepended to every kernel file before NVRTC compiles
// it. kernels/sim/cuda_sim.hpp defines the same functions for the CPU simulator (the
// kernels' logic run on the host, tests without a GPU), so no kernel holds PTX itself.

typedef unsigned short bf16;
typedef unsigned int u32;

// 2^x (the special-function unit's approximation, relative error ~2^-22; exact 0 for -inf).
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// fp32 → bf16, round to nearest even (the hardware conversion; NaN stays NaN).
__device__ __forceinline__ bf16 f2bf(float f) {
    bf16 r;
    asm("cvt.rn.bf16.f32 %0, %1;\n" : "=h"(r) : "f"(f));
    return r;
}

// Two floats as a bf16 pair, `lo` in the low half: one conversion (the instruction puts
// its first source in the upper half).
__device__ __forceinline__ u32 f2bf2(float lo, float hi) {
    u32 d;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(d) : "f"(hi), "f"(lo));
    return d;
}

// d[16×8] += a[16×16] · b[16×8], bf16 operands, fp32 accumulation (a row-major, b
// column-major fragments; the PTX ISA's m16n8k16 layout).
__device__ __forceinline__ void mma(float* d, const u32* a, u32 b0, u32 b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8×8 bf16 matrices from shared memory (lane l gives the address of row l % 8 of
// matrix l / 8); `trans` hands each lane the transposed matrices' elements, which turns
// row-major tiles into the column-major B fragments of the products along the sequence.
__device__ __forceinline__ void ldsm4(u32* r, const bf16* p) {
    const u32 a = (u32)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

__device__ __forceinline__ void ldsm4_t(u32* r, const bf16* p) {
    const u32 a = (u32)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

// 16 bytes from global `src` to shared `dst`, asynchronously; only the first `bytes` (16
// or 0) are read, the rest of the 16 zero-filled. Part of the thread's open group until
// cp_commit; complete after cp_wait.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int bytes) {
    const u32 to = (u32)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to), "l"(src),
                 "r"(bytes));
}

// Closes the thread's open group of asynchronous copies.
__device__ __forceinline__ void cp_commit() {
    asm volatile("cp.async.commit_group;\n" ::);
}

// Waits until at most `pending` (0, 1 or 2) of the thread's committed groups are still in
// flight.
__device__ __forceinline__ void cp_wait(int pending) {
    if (pending == 0) {
        asm volatile("cp.async.wait_group 0;\n" ::);
    } else if (pending == 1) {
        asm volatile("cp.async.wait_group 1;\n" ::);
    } else {
        asm volatile("cp.async.wait_group 2;\n" ::);
    }
}
