// The CPU simulator of the CUDA kernels: what a kernel file needs to compile as host C++
// (built by kernels/src/cuda/sim.rs with the system's C++ compiler, prepended to
// common.cuh and the file in place of ptx.cuh) and a scheduler that runs a launch the way
// the hardware's programming model allows, with shared memory poisoned (NaN) at the start
// of every block. Each CUDA thread is a coroutine with its own
// stack, so per-thread locals stay private; the blocks of a grid run one after
// another on the calling thread, so `__shared__` (a static here) is per block. A thread
// runs until it waits: at __syncthreads (released when every live thread of the block is
// there) or at a warp collective (shuffles, ldmatrix, mma: the last of the warp's 32 lanes
// to arrive computes every lane's result) or a warpgroup one (wgmma, over 128 threads). The next to run is always the lowest-numbered
// runnable thread (the highest in every other block), so warps drift as far apart as the
// kernel's synchronization allows. The twins of ptx.cuh's instructions follow the
// PTX ISA's fragment layouts. Asynchronous copies poison their destination when issued and
// land when waited for, so a read before cp_wait + __syncthreads, or a refill of a tile
// another warp still reads, shows up as NaN instead of passing by luck; a wgmma's
// accumulators read NaN until wgmma.wait_group, and its A registers must stay unchanged
// until then. Divergent collectives, deadlocks and
// misaligned ldmatrix rows end the launch with a message.
//
// Built with hidden visibility and without GNU unique symbols (sim.rs), so every kernel
// library keeps its own scheduler and statics; only harman_sim_launch is exported.
//
// What it does not model: timing, memory coalescing, bank conflicts, register limits, the
// hardware's rounding inside one MMA (fp32 sums in a fixed order here), wgmma's swizzled
// layouts, the async proxy's fences (fence.proxy.async) and shared memory overwritten while
// a wgmma still reads it (the product is taken when the warpgroup issues it). A wgmma
// gathers its warpgroup, so in a block of one warpgroup a __syncthreads missing around a
// wgmma's operand goes unnoticed here (the mma.sync build of the same kernel shows it). It checks the
// kernels' logic (indexing, masks, synchronization, fragment layouts as the ISA documents
// them); a real GPU checks the rest.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>
#include <csetjmp>
#include <ucontext.h>

#define __global__
#define __device__
#define __forceinline__ inline
// Every __shared__ array in one section, so each block can start with it poisoned (NaN),
// as undefined as the hardware leaves it.
#define __shared__ static __attribute__((section("harman_shared")))
extern "C" char __start_harman_shared[] __attribute__((weak));
extern "C" char __stop_harman_shared[] __attribute__((weak));
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

struct uint4 {
    unsigned int x, y, z, w;
} __attribute__((aligned(16)));

inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) {
    return uint4{x, y, z, w};
}

struct dim3 {
    unsigned int x, y, z;
};

inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}

inline float __uint_as_float(unsigned int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}

inline float rsqrtf(float x) {
    return 1.0f / std::sqrt(x);
}

inline int min(int a, int b) {
    return a < b ? a : b;
}

inline int max(int a, int b) {
    return a > b ? a : b;
}

typedef unsigned short bf16;
typedef unsigned int u32;
typedef unsigned long long u64;

namespace sim {

enum State { RUNNABLE, AT_BARRIER, AT_COLLECTIVE, DONE };

struct Copy {
    void* dst;
    const void* src;
    int bytes;
};

// A wgmma result not yet waited for: the thread's accumulator registers (`d`, `n` floats)
// and what they will hold, and the A-fragment registers it read (`a`, as they were then).
struct Pending {
    float* d;
    int n;
    float v[64];
    const u32* a;
    u32 a_then[4];
};

// A CUDA thread: a coroutine on its own stack, kept across blocks and launches (booted once
// through ucontext, switched with _setjmp/_longjmp, which need no system call).
struct Thread {
    jmp_buf env;  // where the coroutine continues
    char* stack = nullptr;
    bool booted = false;
    dim3 idx;
    State state;
    std::vector<Copy> open;                // cp.async copies not yet committed
    std::vector<std::vector<Copy>> groups;  // committed, oldest first
    std::vector<Pending> wg_open;           // wgmma results not yet committed
    std::vector<std::vector<Pending>> wg_groups;  // committed, oldest first
};

// Bytes a lane may hand to (and get back from) one collective.
constexpr int SLOT = 128;

struct Warp {
    int arrived = 0;
    const char* op = nullptr;
    unsigned char in[32][SLOT];
    unsigned char out[32][SLOT];
};

// Bytes a thread may hand to one warpgroup collective (wgmma: 64 accumulators, 4 A
// registers, the descriptor and flags).
constexpr int WG_SLOT = 320;

struct WarpGroup {
    int arrived = 0;
    const char* op = nullptr;
    unsigned char in[128][WG_SLOT];
    unsigned char out[128][64 * sizeof(float)];
};

struct Launch {
    dim3 grid, block, block_idx;
    int threads = 0;
    unsigned shared_bytes = 0;  // dynamic shared memory the launch passed
    bool shared_used = false;   // whether a thread took it (dynamic_shared)
    std::vector<Thread> thread;
    std::vector<Warp> warps;
    std::vector<WarpGroup> groups;
    jmp_buf scheduler;
    ucontext_t boot_return;
    int current = -1;
    // Bounds on the runnable threads' numbers: none below `low`, none above `high`.
    int low = 0, high = -1;
    void (*body)(void*) = nullptr;
    void* body_arg = nullptr;
    std::string error;
    ~Launch() {
        for (Thread& t : thread) {
            std::free(t.stack);
        }
    }
};

inline Launch& launch_state() {
    static Launch l;
    return l;
}

inline Thread& me() {
    Launch& l = launch_state();
    return l.thread[l.current];
}

inline void wake(int i) {
    Launch& l = launch_state();
    l.thread[i].state = RUNNABLE;
    l.low = i < l.low ? i : l.low;
    l.high = i > l.high ? i : l.high;
}

inline void fail(const std::string& why) {
    Launch& l = launch_state();
    if (l.error.empty()) {
        char where[96];
        std::snprintf(where, sizeof where, " (block %u,%u,%u thread %d)", l.block_idx.x,
                      l.block_idx.y, l.block_idx.z, l.current);
        l.error = why + where;
    }
    // Park the thread for good: the scheduler sees the error and ends the launch (the
    // coroutines are booted afresh for the next one).
    me().state = AT_BARRIER;
    if (_setjmp(me().env) == 0) {
        _longjmp(l.scheduler, 1);
    }
}

// The largest dynamic shared memory a block may take (an H100's or H200's 227 KB).
constexpr unsigned DYNAMIC_SHARED_MAX = 227 * 1024;

}  // namespace sim

// The block's dynamic shared memory, in the shared section (so wgmma descriptors address it
// and each block starts with it poisoned), as many bytes as the launch passed.
__shared__ __align__(128) unsigned char harman_dynamic_shared[sim::DYNAMIC_SHARED_MAX];

// As on the GPU: the dynamic shared memory once it is known to hold `bytes`, or the launch
// ends with the shortfall named (the GPU's kernel traps).
inline unsigned char* dynamic_shared(u32 bytes) {
    const unsigned given = sim::launch_state().shared_bytes;
    if (given < bytes) {
        char msg[128];
        std::snprintf(msg, sizeof msg,
                      "__trap: the kernel needs %u bytes of dynamic shared memory, the launch "
                      "passed %u",
                      bytes, given);
        sim::fail(msg);
    }
    sim::launch_state().shared_used = true;
    return harman_dynamic_shared;
}

namespace sim {

// Back to the scheduler until this thread is runnable again.
inline void yield(State s) {
    Launch& l = launch_state();
    me().state = s;
    if (_setjmp(me().env) == 0) {
        _longjmp(l.scheduler, 1);
    }
}

// Lanes of the calling thread's warp (the last warp of a block may be partial).
inline int warp_lanes(int warp) {
    const int left = launch_state().threads - warp * 32;
    return left < 32 ? left : 32;
}

// One warp-wide operation: every lane of the warp hands `in_bytes` of input; the last to
// arrive runs `compute(in, out, lanes)` for the whole warp; each lane gets its `out_bytes`.
template <class F>
inline void collective(const char* op, const void* in, int in_bytes, void* out, int out_bytes,
                       F compute) {
    Launch& l = launch_state();
    const int tid = l.current;
    const int w = tid / 32;
    const int lane = tid % 32;
    Warp& wp = l.warps[w];
    if (wp.arrived > 0 && wp.op != op && std::strcmp(wp.op, op) != 0) {
        fail(std::string("divergent warp: one lane at ") + op + ", another at " + wp.op);
    }
    wp.op = op;
    std::memcpy(wp.in[lane], in, in_bytes);
    const int lanes = warp_lanes(w);
    if (++wp.arrived < lanes) {
        yield(AT_COLLECTIVE);
    } else {
        compute(wp.in, wp.out, lanes);
        wp.arrived = 0;
        for (int i = 0; i < lanes; i++) {
            wake(w * 32 + i);
        }
    }
    std::memcpy(out, wp.out[lane], out_bytes);
}

// One warpgroup-wide operation (the 128 threads 128g .. 128g + 127, all of which must
// exist): as `collective`, over the warpgroup.
template <class F>
inline void group_collective(const char* op, const void* in, int in_bytes, void* out,
                             int out_bytes, F compute) {
    Launch& l = launch_state();
    const int tid = l.current;
    const int g = tid / 128;
    if ((g + 1) * 128 > l.threads) {
        fail(std::string(op) + " needs a full warpgroup (blocks of a multiple of 128 threads)");
    }
    WarpGroup& wg = l.groups[g];
    if (wg.arrived > 0 && wg.op != op && std::strcmp(wg.op, op) != 0) {
        fail(std::string("divergent warpgroup: one thread at ") + op + ", another at " + wg.op);
    }
    wg.op = op;
    std::memcpy(wg.in[tid % 128], in, in_bytes);
    if (++wg.arrived < 128) {
        yield(AT_COLLECTIVE);
    } else {
        compute(wg.in, wg.out);
        wg.arrived = 0;
        for (int i = 0; i < 128; i++) {
            wake(g * 128 + i);
        }
    }
    std::memcpy(out, wg.out[tid % 128], out_bytes);
}

// Runs the current block: every thread from the start of `body`, scheduled round robin.
void run_block();

}  // namespace sim

#define threadIdx (sim::me().idx)
#define blockIdx (sim::launch_state().block_idx)
#define blockDim (sim::launch_state().block)
#define gridDim (sim::launch_state().grid)

inline void __syncthreads() {
    sim::yield(sim::AT_BARRIER);
}

inline void __syncwarp(unsigned int = 0xffffffffu) {
    int dummy = 0;
    sim::collective("__syncwarp", &dummy, 4, &dummy, 4,
                    [](unsigned char (*)[sim::SLOT], unsigned char (*)[sim::SLOT], int) {});
}

template <class T>
inline T __shfl_xor_sync(unsigned int, T v, int mask) {
    struct In {
        T v;
        int mask;
    } in{v, mask};
    T out;
    sim::collective("__shfl_xor_sync", &in, sizeof in, &out, sizeof out,
                    [](unsigned char (*ins)[sim::SLOT], unsigned char (*outs)[sim::SLOT],
                       int lanes) {
                        for (int l = 0; l < lanes; l++) {
                            In me;
                            std::memcpy(&me, ins[l], sizeof me);
                            const int from = l ^ me.mask;
                            In src = me;
                            if (from < lanes) {
                                std::memcpy(&src, ins[from], sizeof src);
                            }
                            std::memcpy(outs[l], &src.v, sizeof(T));
                        }
                    });
    return out;
}

// ---- the twins of ptx.cuh -------------------------------------------------------------

inline float ex2(float x) {
    const float y = std::exp2(x);
    return std::fpclassify(y) == FP_SUBNORMAL ? 0.0f : y;  // .ftz
}

inline bf16 f2bf(float f) {
    unsigned int u;
    std::memcpy(&u, &f, 4);
    if (std::isnan(f)) {
        return 0x7fff;
    }
    return (bf16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline u32 f2bf2(float lo, float hi) {
    return (u32)f2bf(lo) | ((u32)f2bf(hi) << 16);
}

namespace sim {

inline float bf_lo(u32 w) {
    return __uint_as_float(w << 16);
}

inline float bf_hi(u32 w) {
    return __uint_as_float(w & 0xffff0000u);
}

}  // namespace sim

// m16n8k16, bf16 × bf16 + fp32. Lane l (g = l / 4, q = l % 4) holds A[g][2q..2q+1],
// A[g+8][2q..], A[g][2q+8..], A[g+8][2q+8..]; B[2q..2q+1][g], B[2q+8..2q+9][g]; C/D[g][2q..],
// C/D[g+8][2q..] (PTX ISA, "Matrix Fragments for mma.m16n8k16").
inline void mma(float* d, const u32* a, u32 b0, u32 b1) {
    if (sim::warp_lanes(sim::launch_state().current / 32) != 32) {
        sim::fail("mma.sync needs a full warp");
    }
    struct In {
        u32 a[4];
        u32 b[2];
        float c[4];
    } in;
    std::memcpy(in.a, a, sizeof in.a);
    in.b[0] = b0;
    in.b[1] = b1;
    std::memcpy(in.c, d, sizeof in.c);
    sim::collective(
        "mma.m16n8k16", &in, sizeof in, d, 4 * sizeof(float),
        [](unsigned char (*ins)[sim::SLOT], unsigned char (*outs)[sim::SLOT], int) {
            float A[16][16], B[16][8], C[16][8];
            for (int l = 0; l < 32; l++) {
                In x;
                std::memcpy(&x, ins[l], sizeof x);
                const int g = l / 4, q = l % 4;
                for (int h = 0; h < 2; h++) {
                    A[g][2 * q + h] = h ? sim::bf_hi(x.a[0]) : sim::bf_lo(x.a[0]);
                    A[g + 8][2 * q + h] = h ? sim::bf_hi(x.a[1]) : sim::bf_lo(x.a[1]);
                    A[g][2 * q + 8 + h] = h ? sim::bf_hi(x.a[2]) : sim::bf_lo(x.a[2]);
                    A[g + 8][2 * q + 8 + h] = h ? sim::bf_hi(x.a[3]) : sim::bf_lo(x.a[3]);
                    B[2 * q + h][g] = h ? sim::bf_hi(x.b[0]) : sim::bf_lo(x.b[0]);
                    B[2 * q + 8 + h][g] = h ? sim::bf_hi(x.b[1]) : sim::bf_lo(x.b[1]);
                }
                C[g][2 * q] = x.c[0];
                C[g][2 * q + 1] = x.c[1];
                C[g + 8][2 * q] = x.c[2];
                C[g + 8][2 * q + 1] = x.c[3];
            }
            for (int l = 0; l < 32; l++) {
                const int g = l / 4, q = l % 4;
                float r[4];
                for (int e = 0; e < 4; e++) {
                    const int i = g + (e >> 1) * 8;
                    const int j = 2 * q + (e & 1);
                    float acc = 0.0f;
                    for (int k = 0; k < 16; k++) {
                        acc += A[i][k] * B[k][j];
                    }
                    r[e] = C[i][j] + acc;
                }
                std::memcpy(outs[l], r, sizeof r);
            }
        });
}

namespace sim {

// ldmatrix .x4: lanes 8i..8i+7 give the rows of matrix i (16-byte aligned, 8 bf16 each);
// lane l gets, from each matrix, row l / 4, columns 2(l % 4) and 2(l % 4) + 1 — or, with
// `trans`, column l / 4, rows 2(l % 4) and 2(l % 4) + 1.
inline void ldmatrix(u32* r, const bf16* p, bool trans) {
    if (warp_lanes(launch_state().current / 32) != 32) {
        fail("ldmatrix needs a full warp");
    }
    if (((uintptr_t)p & 15u) != 0) {
        fail("ldmatrix: a row address is not 16-byte aligned");
    }
    collective(trans ? "ldmatrix.trans" : "ldmatrix", &p, sizeof p, r, 4 * sizeof(u32),
               [trans](unsigned char (*ins)[SLOT], unsigned char (*outs)[SLOT], int) {
                   bf16 m[4][8][8];
                   for (int l = 0; l < 32; l++) {
                       const bf16* row;
                       std::memcpy(&row, ins[l], sizeof row);
                       std::memcpy(m[l / 8][l % 8], row, 16);
                   }
                   for (int l = 0; l < 32; l++) {
                       u32 out[4];
                       for (int i = 0; i < 4; i++) {
                           const int a = l / 4, b = 2 * (l % 4);
                           const bf16 lo = trans ? m[i][b][a] : m[i][a][b];
                           const bf16 hi = trans ? m[i][b + 1][a] : m[i][a][b + 1];
                           out[i] = (u32)lo | ((u32)hi << 16);
                       }
                       std::memcpy(outs[l], out, sizeof out);
                   }
               });
}

}  // namespace sim

inline void ldsm4(u32* r, const bf16* p) {
    sim::ldmatrix(r, p, false);
}

inline void ldsm4_t(u32* r, const bf16* p) {
    sim::ldmatrix(r, p, true);
}

inline void cp_async16(void* dst, const void* src, int bytes) {
    if (((uintptr_t)dst & 15u) != 0 || ((uintptr_t)src & 15u) != 0) {
        sim::fail("cp.async: an address is not 16-byte aligned");
    }
    std::memset(dst, 0xff, 16);  // NaN until the copy lands (at cp_wait)
    sim::me().open.push_back(sim::Copy{dst, src, bytes});
}

inline void cp_commit() {
    sim::Thread& t = sim::me();
    t.groups.push_back(std::move(t.open));
    t.open.clear();
}

inline void cp_wait(int pending) {
    sim::Thread& t = sim::me();
    while ((int)t.groups.size() > pending) {
        for (const sim::Copy& c : t.groups.front()) {
            std::memset(c.dst, 0, 16);
            std::memcpy(c.dst, c.src, c.bytes);
        }
        t.groups.erase(t.groups.begin());
    }
}

// ---- wgmma (the -DWGMMA builds) --------------------------------------------------------

// The descriptor holds the offset in the shared-memory section where the hardware holds the
// shared-window address; the other fields as the PTX ISA lays them out.
inline u64 wg_desc(const void* p, u32 lbo, u32 sbo) {
    const char* c = (const char*)p;
    if (__start_harman_shared == nullptr || c < __start_harman_shared ||
        c >= __stop_harman_shared) {
        sim::fail("wgmma descriptor: the matrix is not in shared memory");
    }
    const u64 off = (u64)(c - __start_harman_shared);
    if ((off & 15u) != 0 || (lbo & 15u) != 0 || (sbo & 15u) != 0) {
        sim::fail("wgmma descriptor: address, LBO and SBO must be multiples of 16 bytes");
    }
    return ((off & 0x3FFFFu) >> 4) | ((u64)(lbo >> 4) << 16) | ((u64)(sbo >> 4) << 32);
}

inline void wg_fence() {}

inline void wg_hold(float&) {}

inline void wg_hold(u32&) {}

inline void fence_async_shared() {}

namespace sim {

// The latest value a wgmma will leave in accumulator `d`, if one is in flight.
inline const Pending* pending_for(Thread& t, float* d) {
    for (auto it = t.wg_open.rbegin(); it != t.wg_open.rend(); ++it) {
        if (it->d == d) {
            return &*it;
        }
    }
    for (auto g = t.wg_groups.rbegin(); g != t.wg_groups.rend(); ++g) {
        for (auto it = g->rbegin(); it != g->rend(); ++it) {
            if (it->d == d) {
                return &*it;
            }
        }
    }
    return nullptr;
}

// B[k][n] of a wgmma's 16 × N operand in shared memory, no swizzle (PTX ISA, "Shared Memory
// Matrix Layout", canonical layouts, T = 8 bf16 a 16-byte row): K-major
// ((8,m),(T,2k)):((1T,SBO),(1,LBO)), MN-major (trans) ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO)).
inline float wg_b(u64 desc, bool trans, int k, int n) {
    const size_t start = (size_t)(desc & 0x3FFFu) << 4;
    const size_t lbo = (size_t)((desc >> 16) & 0x3FFFu) << 4;
    const size_t sbo = (size_t)((desc >> 32) & 0x3FFFu) << 4;
    const size_t bytes =
        trans ? start + (n % 8) * 2 + (n / 8) * sbo + (k % 8) * 16 + (k / 8) * lbo
              : start + (n % 8) * 16 + (n / 8) * sbo + (k % 8) * 2 + (k / 8) * lbo;
    if (bytes + 2 > (size_t)(__stop_harman_shared - __start_harman_shared)) {
        fail("wgmma: the B operand runs past shared memory");
    }
    bf16 v;
    std::memcpy(&v, __start_harman_shared + bytes, 2);
    return bf_lo((u32)v);
}

}  // namespace sim

// wgmma.mma_async m64nNk16, bf16 × bf16 + fp32, A in registers: thread i of the warpgroup
// (warp w = i / 32, g = lane / 4, q = lane % 4) holds A[16w+g][2q..], A[16w+g+8][2q..],
// A[16w+g][2q+8..], A[16w+g+8][2q+8..] and d[4j + e] = D[16w + g + 8(e / 2)][8j + 2q + e % 2]
// (PTX ISA, "Register Fragments and Shared Memory Matrix Layouts" for wgmma) — or, with
// `SS`, A in shared memory behind descriptor `a_desc` (K-major). The result is computed
// when the whole warpgroup has issued it and lands in d at wg_wait; until then d reads NaN,
// so a kernel that reads its accumulators early fails its test. A later wgmma on the same
// accumulators takes the pending value as its input, as the hardware chains them.
namespace sim {

template <int N, int TRANS, bool SS>
inline void wg_issue(float* d, const u32* a, u64 a_desc, u64 b, int accumulate) {
    static_assert(N % 8 == 0 && N >= 8 && N <= 128, "wgmma N");
    Thread& t = me();
    struct In {
        float c[N / 2];
        u32 a[4];
        u64 a_desc;
        u64 desc;
        int accumulate;
    } in;
    static_assert(sizeof(In) <= WG_SLOT, "wgmma slot");
    const Pending* prev = pending_for(t, d);
    std::memcpy(in.c, prev ? prev->v : d, sizeof in.c);
    std::memset(in.a, 0, sizeof in.a);
    if (!SS) {
        std::memcpy(in.a, a, sizeof in.a);
    }
    in.a_desc = a_desc;
    in.desc = b;
    in.accumulate = accumulate;
    float out[N / 2];
    static const char* op = SS      ? "wgmma.mma_async (A and B in shared memory)"
                            : TRANS ? "wgmma.mma_async (B MN-major)"
                                    : "wgmma.mma_async";
    group_collective(
        op, &in, sizeof in, out, sizeof out,
        [](unsigned char (*ins)[WG_SLOT], unsigned char (*outs)[64 * sizeof(float)]) {
            static float A[64][16], B[16][N];
            In first;
            std::memcpy(&first, ins[0], sizeof first);
            for (int i = 0; i < 128; i++) {
                In x;
                std::memcpy(&x, ins[i], sizeof x);
                if (x.desc != first.desc || x.a_desc != first.a_desc ||
                    x.accumulate != first.accumulate) {
                    fail("wgmma: the warpgroup's threads pass different descriptors or "
                         "scale-d");
                }
                if (SS) {
                    continue;
                }
                const int w = i / 32, g = (i % 32) / 4, q = i % 4;
                for (int h = 0; h < 2; h++) {
                    A[16 * w + g][2 * q + h] = h ? bf_hi(x.a[0]) : bf_lo(x.a[0]);
                    A[16 * w + g + 8][2 * q + h] = h ? bf_hi(x.a[1]) : bf_lo(x.a[1]);
                    A[16 * w + g][2 * q + 8 + h] = h ? bf_hi(x.a[2]) : bf_lo(x.a[2]);
                    A[16 * w + g + 8][2 * q + 8 + h] = h ? bf_hi(x.a[3]) : bf_lo(x.a[3]);
                }
            }
            for (u64 desc : {first.desc, first.a_desc}) {
                if ((desc >> 62) != 0 || ((desc >> 49) & 7u) != 0) {
                    fail("wgmma: only the no-swizzle layout with base offset 0 is simulated");
                }
            }
            if (SS) {
                // A K-major 64 × 16 operand is laid out as a K-major B with N = 64.
                for (int m = 0; m < 64; m++) {
                    for (int k = 0; k < 16; k++) {
                        A[m][k] = wg_b(first.a_desc, false, k, m);
                    }
                }
            }
            for (int k = 0; k < 16; k++) {
                for (int n = 0; n < N; n++) {
                    B[k][n] = wg_b(first.desc, TRANS != 0, k, n);
                }
            }
            for (int i = 0; i < 128; i++) {
                In x;
                std::memcpy(&x, ins[i], sizeof x);
                const int w = i / 32, g = (i % 32) / 4, q = i % 4;
                float r[N / 2];
                for (int j = 0; j < N / 8; j++) {
                    for (int e = 0; e < 4; e++) {
                        const int row = 16 * w + g + 8 * (e >> 1);
                        const int col = 8 * j + 2 * q + (e & 1);
                        float acc = 0.0f;
                        for (int k = 0; k < 16; k++) {
                            acc += A[row][k] * B[k][col];
                        }
                        r[4 * j + e] = (x.accumulate ? x.c[4 * j + e] : 0.0f) + acc;
                    }
                }
                std::memcpy(outs[i], r, sizeof r);
            }
        });
    Pending p;
    p.d = d;
    p.n = N / 2;
    std::memcpy(p.v, out, sizeof out);
    p.a = SS ? nullptr : a;
    if (!SS) {
        std::memcpy(p.a_then, a, sizeof p.a_then);
    }
    t.wg_open.push_back(p);
    for (int i = 0; i < N / 2; i++) {
        d[i] = NAN;  // undefined until wg_wait
    }
}

}  // namespace sim

template <int N, int TRANS>
inline void wg_mma(float* d, const u32* a, u64 b, int accumulate) {
    sim::wg_issue<N, TRANS, false>(d, a, 0, b, accumulate);
}

template <int N>
inline void wg_mma_ss(float* d, u64 a, u64 b, int accumulate) {
    sim::wg_issue<N, 0, true>(d, nullptr, a, b, accumulate);
}

inline void wg_commit() {
    sim::Thread& t = sim::me();
    t.wg_groups.push_back(std::move(t.wg_open));
    t.wg_open.clear();
}

// Lands every committed group but the newest PENDING, oldest first. The hardware reads the
// A registers while the wgmma runs, so one rewritten before its wait is an error here.
template <int PENDING = 0>
inline void wg_wait() {
    sim::Thread& t = sim::me();
    if (!t.wg_open.empty()) {
        sim::fail("wgmma.wait_group with wgmma issued but not committed");
    }
    while ((int)t.wg_groups.size() > PENDING) {
        for (const sim::Pending& p : t.wg_groups.front()) {
            if (p.a != nullptr && std::memcmp(p.a, p.a_then, sizeof p.a_then) != 0) {
                sim::fail("wgmma: an A-fragment register was rewritten before the wgmma "
                          "reading it was waited for");
            }
            std::memcpy(p.d, p.v, p.n * sizeof(float));
        }
        t.wg_groups.erase(t.wg_groups.begin());
    }
}

namespace sim {

constexpr size_t STACK = 256 << 10;

// A coroutine's life: wait to be resumed, run the kernel for the current block, report
// done, and again for the next block.
inline void coroutine() {
    Launch& l = launch_state();
    const int i = l.current;
    if (_setjmp(l.thread[i].env) == 0) {
        ucontext_t dropped;  // never resumed: the thread continues through env
        swapcontext(&dropped, &l.boot_return);
    }
    for (;;) {
        l.body(l.body_arg);
        if (!l.thread[i].wg_open.empty() || !l.thread[i].wg_groups.empty()) {
            fail("the kernel ended with a wgmma not waited for");
        }
        yield(DONE);
    }
}

inline void boot(int i) {
    Launch& l = launch_state();
    Thread& t = l.thread[i];
    if (t.stack == nullptr) {
        t.stack = (char*)std::malloc(STACK);
    }
    ucontext_t start;
    getcontext(&start);
    start.uc_stack.ss_sp = t.stack;
    start.uc_stack.ss_size = STACK;
    start.uc_link = nullptr;
    makecontext(&start, coroutine, 0);
    l.current = i;
    swapcontext(&l.boot_return, &start);
    t.booted = true;
}

// Every coroutine booted again (after a failed launch left some mid-kernel).
inline void reboot_all() {
    for (Thread& t : launch_state().thread) {
        t.booted = false;
    }
}

inline void run_block() {
    Launch& l = launch_state();
    const int n = l.threads;
    if ((int)l.thread.size() < n) {
        l.thread.resize(n);
    }
    if (l.warps.size() < (size_t)(n + 31) / 32) {
        l.warps.resize((n + 31) / 32);
    }
    for (Warp& w : l.warps) {
        w.arrived = 0;
        w.op = nullptr;
    }
    if (l.groups.size() < (size_t)(n + 127) / 128) {
        l.groups.resize((n + 127) / 128);
    }
    for (WarpGroup& g : l.groups) {
        g.arrived = 0;
        g.op = nullptr;
    }
    if (__start_harman_shared != nullptr) {
        // The static arrays, and as much of the dynamic memory as the launch passed.
        unsigned char* dyn = harman_dynamic_shared;
        std::memset(__start_harman_shared, 0xff, (char*)dyn - __start_harman_shared);
        std::memset(dyn + DYNAMIC_SHARED_MAX, 0xff,
                    __stop_harman_shared - (char*)(dyn + DYNAMIC_SHARED_MAX));
        std::memset(dyn, 0xff, l.shared_bytes);
    }
    l.low = n;
    l.high = -1;
    for (int i = 0; i < n; i++) {
        Thread& t = l.thread[i];
        t.idx = dim3{(unsigned)(i % l.block.x), (unsigned)((i / l.block.x) % l.block.y),
                     (unsigned)(i / (l.block.x * l.block.y))};
        t.open.clear();
        t.groups.clear();
        t.wg_open.clear();
        t.wg_groups.clear();
        if (!t.booted) {
            boot(i);
        }
        wake(i);
    }
    // Greedy order: always the lowest-numbered runnable thread in even blocks, the highest
    // in odd ones, so one warp runs as far ahead of the others as the synchronization lets
    // it (a missing __syncthreads lets it overwrite or read a tile too early).
    const bool ascending = ((l.block_idx.x + l.block_idx.y + l.block_idx.z) & 1u) == 0;
    for (;;) {
        int next = -1;
        if (ascending) {
            while (l.low < n && l.thread[l.low].state != RUNNABLE) {
                l.low++;
            }
            next = l.low < n ? l.low : -1;
        } else {
            while (l.high >= 0 && l.thread[l.high].state != RUNNABLE) {
                l.high--;
            }
            next = l.high;
        }
        if (next >= 0) {
            l.current = next;
            if (_setjmp(l.scheduler) == 0) {
                _longjmp(l.thread[next].env, 1);
            }
            if (!l.error.empty()) {
                reboot_all();
                return;
            }
            continue;
        }
        int done = 0, barrier = 0;
        for (int i = 0; i < n; i++) {
            done += l.thread[i].state == DONE;
            barrier += l.thread[i].state == AT_BARRIER;
        }
        if (done == n) {
            return;
        }
        if (barrier + done == n) {
            // Every live thread is at __syncthreads (exited threads count as arrived).
            for (int i = 0; i < n; i++) {
                if (l.thread[i].state == AT_BARRIER) {
                    wake(i);
                }
            }
            continue;
        }
        // A collective some threads wait at while the rest are at __syncthreads or gone.
        char msg[160] = "deadlock";
        bool found = false;
        for (int w = 0; w < (int)l.warps.size() && !found; w++) {
            if ((found = l.warps[w].arrived > 0)) {
                std::snprintf(msg, sizeof msg, "deadlock: %d of warp %d's lanes wait at %s",
                              l.warps[w].arrived, w, l.warps[w].op);
                l.current = w * 32;
            }
        }
        for (int g = 0; g < (int)l.groups.size() && !found; g++) {
            if ((found = l.groups[g].arrived > 0)) {
                std::snprintf(msg, sizeof msg,
                              "deadlock: %d of warpgroup %d's threads wait at %s",
                              l.groups[g].arrived, g, l.groups[g].op);
                l.current = g * 128;
            }
        }
        l.error = std::string(msg) +
                  (found ? " while the others are at __syncthreads or have exited" : "");
        reboot_all();
        return;
    }
}

template <class... A, size_t... I>
inline void call(void (*f)(A...), void** args, std::index_sequence<I...>) {
    std::tuple<A...> values;
    ((std::memcpy((void*)&std::get<I>(values), args[I], sizeof(A))), ...);
    f(std::get<I>(values)...);
}

// Runs kernel `f` over the grid with `shared_bytes` of dynamic shared memory and `args` as
// cuLaunchKernel takes them (one pointer per parameter); 0, or 1 with the reason in `err`.
template <class... A>
inline int launch(void (*f)(A...), const unsigned* grid, const unsigned* block,
                  unsigned shared_bytes, void** args, char* err, size_t err_len) {
    Launch& l = launch_state();
    if (shared_bytes > DYNAMIC_SHARED_MAX) {
        std::snprintf(err, err_len, "%u bytes of dynamic shared memory (at most %u)",
                      shared_bytes, DYNAMIC_SHARED_MAX);
        return 1;
    }
    l.shared_bytes = shared_bytes;
    l.shared_used = false;
    l.grid = dim3{grid[0], grid[1], grid[2]};
    l.block = dim3{block[0], block[1], block[2]};
    l.threads = (int)(block[0] * block[1] * block[2]);
    l.error.clear();
    if (l.threads < 1 || l.threads > 1024) {
        std::snprintf(err, err_len, "block of %d threads", l.threads);
        return 1;
    }
    struct Bound {
        void (*f)(A...);
        void** args;
    } bound{f, args};
    l.body = [](void* p) {
        Bound* b = (Bound*)p;
        call(b->f, b->args, std::index_sequence_for<A...>{});
    };
    l.body_arg = &bound;
    for (unsigned z = 0; z < grid[2]; z++) {
        for (unsigned y = 0; y < grid[1]; y++) {
            for (unsigned x = 0; x < grid[0]; x++) {
                l.block_idx = dim3{x, y, z};
                run_block();
                if (!l.error.empty()) {
                    std::snprintf(err, err_len, "%s", l.error.c_str());
                    return 1;
                }
            }
        }
    }
    if (shared_bytes > 0 && !l.shared_used) {
        // On the GPU they would cost blocks per SM for nothing.
        std::snprintf(err, err_len,
                      "the launch passed %u bytes of dynamic shared memory the kernel does not "
                      "use",
                      shared_bytes);
        return 1;
    }
    return 0;
}

}  // namespace sim
