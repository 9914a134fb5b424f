// Every inline-PTX instruction the kernels use, each behind a small function: the special
// function unit's 2^x, the hardware bf16 conversions, the tensor-core MMA, ldmatrix, the
// asynchronous global→shared copies and (builds with -DWGMMA, sm_90a) Hopper's warpgroup
// MMA. Prepended to every kernel file before NVRTC compiles it. kernels/sim/cuda_sim.hpp
// defines the same functions for the CPU simulator (the kernels' logic run on the host,
// tests without a GPU), so no kernel holds PTX itself.

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

// The block's dynamic shared memory: as many bytes as the launch passed (flash.cu's tiles,
// which outgrow the 48 KB a static __shared__ array may take at head size 128).
extern __shared__ __align__(128) unsigned char harman_dynamic_shared[];

// The block's dynamic shared memory, once it is known to hold `bytes`: a kernel launched with
// less stops with an error (__trap) instead of using memory it does not own.
__device__ __forceinline__ unsigned char* dynamic_shared(u32 bytes) {
    u32 given;
    asm("mov.u32 %0, %%dynamic_smem_size;\n" : "=r"(given));
    if (given < bytes) {
        __trap();
    }
    return harman_dynamic_shared;
}

#ifdef WGMMA
// ---- Hopper's warpgroup MMA (sm_90a; only the builds with -DWGMMA use it) ---------------

typedef unsigned long long u64;

// The descriptor of a matrix in shared memory for wgmma, in the no-swizzle core-matrix
// layout (8 rows × 16 bytes contiguous per core matrix): `lbo` bytes between core matrices
// adjacent along K, `sbo` bytes between those adjacent along M/N (PTX ISA, "Matrix
// Descriptor Format": start address, LBO and SBO in 16-byte units at bits 0, 16 and 32;
// base offset 0, swizzle mode 0).
__device__ __forceinline__ u64 wg_desc(const void* p, u32 lbo, u32 sbo) {
    const u32 a = (u32)__cvta_generic_to_shared(p);
    return (u64)((a & 0x3FFFFu) >> 4) | ((u64)(lbo >> 4) << 16) | ((u64)(sbo >> 4) << 32);
}

// Orders this thread's register writes before the warpgroup's next wgmma reads them.
__device__ __forceinline__ void wg_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

// Closes the group of wgmma operations issued since the last commit.
__device__ __forceinline__ void wg_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

// Waits until at most PENDING of the committed wgmma groups are still in flight (the
// older groups' accumulators readable, their shared-memory operands free).
template <int PENDING = 0>
__device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(PENDING) : "memory");
}

// Pins register `r` here: the compiler may not move a read of it above this point (placed
// after wg_wait) nor a write below it (placed before wg_fence) — CUTLASS's
// warpgroup_fence_operand.
__device__ __forceinline__ void wg_hold(float& r) {
    asm volatile("" : "+f"(r)::"memory");
}

// The same for an A-operand register (placed before wg_fence: written before it).
__device__ __forceinline__ void wg_hold(u32& r) {
    asm volatile("" : "+r"(r)::"memory");
}

// Makes this thread's completed writes to shared memory (cp.async, st.shared) visible to
// the async proxy wgmma reads through; then a barrier, then the wgmma.
__device__ __forceinline__ void fence_async_shared() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// A wgmma's accumulator operands for N columns: N / 2 floats of `d` from d[i] on, and the
// instruction's matching list "%0, %1, ..." (the accumulators come first in every form).
#define WG_D4(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define WG_D8(i) WG_D4(i), WG_D4(i + 4)
#define WG_D16(i) WG_D8(i), WG_D8(i + 8)
#define WG_D32(i) WG_D16(i), WG_D16(i + 16)
#define WG_D64(i) WG_D32(i), WG_D32(i + 32)
#define WG_R8 "%0, %1, %2, %3, %4, %5, %6, %7"
#define WG_R16 WG_R8 ", %8, %9, %10, %11, %12, %13, %14, %15"
#define WG_R32 \
    WG_R16 ", %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define WG_R64 \
    WG_R32 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
           "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

// The shapes the attention kernels take (N = 16, 32, 64, and 128 for the products along the
// sequence at head size 128); wg_mma dispatches. A in registers: after the N / 2
// accumulators come the four A registers, `accumulate`, the B descriptor and TRANS.
template <int TRANS>
__device__ __forceinline__ void wg_mma16(float* d, const u32* a, u64 b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %12, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {" WG_R8 "}, "
        "{%8, %9, %10, %11}, %13, p, 1, 1, %14;\n}\n"
        : WG_D8(0)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(accumulate), "l"(b), "n"(TRANS));
}

template <int TRANS>
__device__ __forceinline__ void wg_mma32(float* d, const u32* a, u64 b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %20, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {" WG_R16 "}, "
        "{%16, %17, %18, %19}, %21, p, 1, 1, %22;\n}\n"
        : WG_D16(0)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(accumulate), "l"(b), "n"(TRANS));
}

template <int TRANS>
__device__ __forceinline__ void wg_mma64(float* d, const u32* a, u64 b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %36, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {" WG_R32 "}, "
        "{%32, %33, %34, %35}, %37, p, 1, 1, %38;\n}\n"
        : WG_D32(0)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(accumulate), "l"(b), "n"(TRANS));
}

template <int TRANS>
__device__ __forceinline__ void wg_mma128(float* d, const u32* a, u64 b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %68, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" WG_R64 "}, "
        "{%64, %65, %66, %67}, %69, p, 1, 1, %70;\n}\n"
        : WG_D64(0)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(accumulate), "l"(b), "n"(TRANS));
}

// d[64×N] (+)= a[64×16] · b[16×N] over the warpgroup (128 threads, warp w holding rows
// 16w..16w+15): `a` this thread's four bf16x2 registers in the m16n8k16 A layout, `b` a
// shared-memory descriptor (K-major, or MN-major with TRANS = 1), `d` this thread's N/2
// fp32 accumulators in the m16n8 layout repeated along N; `accumulate` 0 overwrites d.
// Asynchronous: d is undefined until wg_commit + wg_wait.
template <int N, int TRANS>
__device__ __forceinline__ void wg_mma(float* d, const u32* a, u64 b, int accumulate) {
    static_assert(N == 16 || N == 32 || N == 64 || N == 128, "wg_mma: N is 16, 32, 64 or 128");
    if constexpr (N == 16) {
        wg_mma16<TRANS>(d, a, b, accumulate);
    } else if constexpr (N == 32) {
        wg_mma32<TRANS>(d, a, b, accumulate);
    } else if constexpr (N == 64) {
        wg_mma64<TRANS>(d, a, b, accumulate);
    } else {
        wg_mma128<TRANS>(d, a, b, accumulate);
    }
}

// d[64×N] (+)= a[64×16] · b[16×N] with both operands in shared memory (descriptors, K-major
// both): as wg_mma, without A registers; after the accumulators come the A and B
// descriptors and `accumulate`.
__device__ __forceinline__ void wg_mma_ss16(float* d, u64 a, u64 b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {" WG_R8 "}, "
        "%8, %9, p, 1, 1, 0, 0;\n}\n"
        : WG_D8(0)
        : "l"(a), "l"(b), "r"(accumulate));
}

__device__ __forceinline__ void wg_mma_ss32(float* d, u64 a, u64 b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {" WG_R16 "}, "
        "%16, %17, p, 1, 1, 0, 0;\n}\n"
        : WG_D16(0)
        : "l"(a), "l"(b), "r"(accumulate));
}

__device__ __forceinline__ void wg_mma_ss64(float* d, u64 a, u64 b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {" WG_R32 "}, "
        "%32, %33, p, 1, 1, 0, 0;\n}\n"
        : WG_D32(0)
        : "l"(a), "l"(b), "r"(accumulate));
}

template <int N>
__device__ __forceinline__ void wg_mma_ss(float* d, u64 a, u64 b, int accumulate) {
    static_assert(N == 16 || N == 32 || N == 64, "wg_mma_ss: N is 16, 32 or 64");
    if constexpr (N == 16) {
        wg_mma_ss16(d, a, b, accumulate);
    } else if constexpr (N == 32) {
        wg_mma_ss32(d, a, b, accumulate);
    } else {
        wg_mma_ss64(d, a, b, accumulate);
    }
}
#endif  // WGMMA
