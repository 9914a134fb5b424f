//! The kernel simulator (`harman_kernels::cuda::sim`) is strict where the hardware is
//! unforgiving: small kernels with a missing barrier, a read of an asynchronous copy before
//! waiting for it, a launch with less dynamic shared memory than its kernel needs (or some it
//! does not use), a shuffle only half a warp reaches, a wgmma result read before waiting for
//! it, its A registers rewritten while it runs and a wgmma one warp of the warpgroup skips
//! must fail there, and their correct twins pass (the wgmma ones with the product the PTX
//! ISA's layouts give, both operand majors). (The backend's own kernels run on it in
//! `cuda_ops.rs` and the training tests when no GPU is present.) Skipped, with the reason
//! printed, where there is no C++ compiler.

use harman_kernels::cuda::compile::KernelFile;
use harman_kernels::cuda::sim::{self, HostMem, Simulator};
use std::ffi::c_void;

const SOURCE: &str = r#"
// out[i] = x[(i + 1) % n] through shared memory, with the barrier a block needs between
// the writes and the reads (`sync`) or without it.
extern "C" __global__ void shift(float* out, const float* x, int sync) {
    __shared__ float tile[128];
    const int i = threadIdx.x;
    tile[i] = x[i];
    if (sync) {
        __syncthreads();
    }
    out[i] = tile[(i + 1) % blockDim.x];
}

// 16 bytes per thread through cp.async; `wait` = 0 reads them before cp_wait.
extern "C" __global__ void copy_async(float* out, const float* x, int wait) {
    __shared__ __align__(16) float tile[4 * 32];
    const int i = threadIdx.x;
    cp_async16(tile + 4 * i, x + 4 * i, 16);
    cp_commit();
    if (wait) {
        cp_wait(0);
    }
    for (int k = 0; k < 4; k++) {
        out[4 * i + k] = tile[4 * i + k];
    }
}

// D[64×16] = A[64×16] · B[16×16] on one warpgroup's wgmma: A (bf16, row-major) in
// registers, B (bf16, row-major [k][n]) staged in shared memory as core matrices both
// K-major and MN-major. `mode` bit 0 reads the MN-major copy (transposed wgmma), bit 1 reads
// the result before waiting for it, bit 2 lets warp 0 skip the wgmma, bit 3 rewrites the A
// registers before waiting, bit 4 reads A from shared memory too (K-major).
extern "C" __global__ void wg_product(float* out, const bf16* a, const bf16* b, int mode) {
    __shared__ __align__(128) bf16 kmajor[16 * 16];
    __shared__ __align__(128) bf16 mnmajor[16 * 16];
    __shared__ __align__(128) bf16 amajor[64 * 16];
    const int t = threadIdx.x;
    for (int i = t; i < 64 * 16; i += blockDim.x) {
        const int m = i / 16, k = i % 16;
        amajor[((m / 8) * 2 + k / 8) * 64 + (m % 8) * 8 + k % 8] = a[i];
    }
    for (int i = t; i < 256; i += blockDim.x) {
        const int k = i / 16, n = i % 16;
        kmajor[((n / 8) * 2 + k / 8) * 64 + (n % 8) * 8 + k % 8] = b[i];
        mnmajor[((k / 8) * 2 + n / 8) * 64 + (k % 8) * 8 + n % 8] = b[i];
    }
    __syncthreads();
    const int w = t / 32, g = (t % 32) / 4, q = t % 4;
    const int r = 16 * w + g;
    u32 ar[4];
    for (int i = 0; i < 4; i++) {
        const int row = r + 8 * (i & 1), col = 2 * q + 8 * (i >> 1);
        ar[i] = (u32)a[row * 16 + col] | ((u32)a[row * 16 + col + 1] << 16);
    }
    float d[8];
    for (int i = 0; i < 8; i++) {
        d[i] = 0.0f;
    }
    const bool trans = mode & 1;
    if (!((mode & 4) && w == 0)) {
        wg_fence();
        if (mode & 16) {
            wg_mma_ss<16>(d, wg_desc(amajor, 128, 256), wg_desc(kmajor, 128, 256), 0);
        } else if (trans) {
            wg_mma<16, 1>(d, ar, wg_desc(mnmajor, 256, 128), 0);
        } else {
            wg_mma<16, 0>(d, ar, wg_desc(kmajor, 128, 256), 0);
        }
        wg_commit();
        if (mode & 8) {
            ar[0] ^= 1u;
        }
        if (!(mode & 2)) {
            wg_wait();
        }
    }
    for (int j = 0; j < 2; j++) {
        for (int e = 0; e < 4; e++) {
            out[(r + 8 * (e >> 1)) * 16 + 8 * j + 2 * q + (e & 1)] = d[4 * j + e];
        }
    }
    if (mode & 2) {
        wg_wait();
    }
}

// out[i] = x[(i + 1) % n] through the block's dynamic shared memory, which the kernel needs
// `bytes` of.
extern "C" __global__ void dynamic_shift(float* out, const float* x, int bytes) {
    float* tile = (float*)dynamic_shared(bytes);
    const int i = threadIdx.x;
    tile[i] = x[i];
    __syncthreads();
    out[i] = tile[(i + 1) % blockDim.x];
}

// A warp sum every lane takes part in (`half` = 0) or only the lower 16 lanes.
extern "C" __global__ void lane_sum(float* out, const float* x, int half) {
    float v = x[threadIdx.x];
    if (!half || (threadIdx.x & 31) < 16) {
        v = warp_sum(v);
    }
    out[threadIdx.x] = v;
}
"#;

const FILE: KernelFile = KernelFile {
    name: "simcheck",
    source: SOURCE,
    kernels: &[
        "shift",
        "copy_async",
        "dynamic_shift",
        "lane_sum",
        "wg_product",
    ],
};

struct Rig {
    sim: Simulator,
    x: Vec<f32>,
}

fn rig() -> Option<Rig> {
    if let Err(why) = sim::probe() {
        eprintln!("skipped: {why}");
        return None;
    }
    let sim = Simulator::new(&[FILE], 64, None).expect("build the check kernels");
    // Values that differ from one another and are never zero.
    let x = (0..128).map(|i| 1.0 + (i * 37 % 101) as f32).collect();
    Some(Rig { sim, x })
}

impl Rig {
    /// Runs `name` on one block of `threads` with (out, x, flag); the output, or the
    /// simulator's error.
    fn run(&self, name: &str, threads: u32, flag: i32) -> Result<Vec<f32>, String> {
        self.run_shared(name, threads, flag, 0)
    }

    /// As `run`, with `shared_bytes` of dynamic shared memory.
    fn run_shared(
        &self,
        name: &str,
        threads: u32,
        flag: i32,
        shared_bytes: u32,
    ) -> Result<Vec<f32>, String> {
        let mut out: HostMem = self.sim.alloc(128 * 4);
        out.write(&vec![f32::NAN; 128]);
        let mut x = self.sim.alloc(128 * 4);
        x.write(&self.x);
        let mut slots = [out.addr(), x.addr(), flag as u32 as u64];
        let mut args: Vec<*mut c_void> = slots
            .iter_mut()
            .map(|s| s as *mut u64 as *mut c_void)
            .collect();
        self.sim
            .launch(name, (1, 1, 1), threads, shared_bytes, &mut args)
            .map_err(|e| e.to_string())?;
        Ok(out.read(threads as usize * if name == "copy_async" { 4 } else { 1 }))
    }
}

#[test]
fn a_missing_barrier_gives_wrong_values() {
    let Some(r) = rig() else { return };
    let want: Vec<f32> = (0..128).map(|i| r.x[(i + 1) % 128]).collect();
    assert_eq!(r.run("shift", 128, 1).unwrap(), want);
    let racy = r.run("shift", 128, 0).unwrap();
    assert_ne!(racy, want, "a read before the barrier went unnoticed");
}

#[test]
fn dynamic_shared_memory_holds_what_the_launch_passed() {
    let Some(r) = rig() else { return };
    let want: Vec<f32> = (0..128).map(|i| r.x[(i + 1) % 128]).collect();
    assert_eq!(r.run_shared("dynamic_shift", 128, 512, 512).unwrap(), want);
    // Bytes a kernel does not use are refused (on the GPU they cost blocks per SM).
    let err = r.run_shared("shift", 128, 1, 512).unwrap_err();
    assert!(err.contains("does not use"), "{err}");
    // A launch that passes less than the kernel needs stops, as the GPU's __trap does.
    let err = r.run_shared("dynamic_shift", 128, 512, 256).unwrap_err();
    assert!(
        err.contains("__trap") && err.contains("needs 512") && err.contains("passed 256"),
        "{err}"
    );
}

#[test]
fn reading_an_async_copy_before_waiting_reads_poison() {
    let Some(r) = rig() else { return };
    assert_eq!(r.run("copy_async", 32, 1).unwrap(), r.x);
    let early = r.run("copy_async", 32, 0).unwrap();
    assert!(early.iter().all(|v| v.is_nan()), "{early:?}");
}

#[test]
fn a_shuffle_half_a_warp_reaches_is_an_error() {
    let Some(r) = rig() else { return };
    let sums = r.run("lane_sum", 64, 0).unwrap();
    let first: f32 = r.x[..32].iter().sum();
    let second: f32 = r.x[32..64].iter().sum();
    assert!(sums[..32].iter().all(|&s| s == first) && sums[32..].iter().all(|&s| s == second));
    let err = r.run("lane_sum", 64, 1).unwrap_err();
    assert!(
        err.contains("deadlock") && err.contains("__shfl_xor_sync"),
        "{err}"
    );
}

/// Runs wg_product with A[m][k] = (m + 2k) % 7 - 3 and B[k][n] = (3k + n) % 5 - 2 (small
/// integers: bf16 holds them and every sum exactly); the 64 × 16 result, or the error.
fn wg_product(r: &Rig, mode: i32) -> Result<Vec<f32>, String> {
    let bf = |v: f32| half::bf16::from_f32(v).to_bits();
    let a: Vec<u16> = (0..64 * 16)
        .map(|i| bf(((i / 16 + 2 * (i % 16)) % 7) as f32 - 3.0))
        .collect();
    let b: Vec<u16> = (0..16 * 16)
        .map(|i| bf(((3 * (i / 16) + i % 16) % 5) as f32 - 2.0))
        .collect();
    let mut out = r.sim.alloc(64 * 16 * 4);
    out.write(&vec![f32::NAN; 64 * 16]);
    let mut a_d = r.sim.alloc(a.len() * 2);
    a_d.write(&a);
    let mut b_d = r.sim.alloc(b.len() * 2);
    b_d.write(&b);
    let mut slots = [out.addr(), a_d.addr(), b_d.addr(), mode as u32 as u64];
    let mut args: Vec<*mut c_void> = slots
        .iter_mut()
        .map(|s| s as *mut u64 as *mut c_void)
        .collect();
    r.sim
        .launch("wg_product", (1, 1, 1), 128, 0, &mut args)
        .map_err(|e| e.to_string())?;
    Ok(out.read(64 * 16))
}

#[test]
fn wgmma_follows_the_isa_layouts_and_its_misuse_fails() {
    let Some(r) = rig() else { return };
    let want: Vec<f32> = (0..64 * 16)
        .map(|i| {
            let (m, n) = (i / 16, i % 16);
            (0..16)
                .map(|k| {
                    let a = ((m + 2 * k) % 7) as f32 - 3.0;
                    let b = ((3 * k + n) % 5) as f32 - 2.0;
                    a * b
                })
                .sum()
        })
        .collect();
    assert!(want.iter().any(|&v| v != 0.0));
    assert_eq!(wg_product(&r, 0).unwrap(), want, "K-major B");
    assert_eq!(wg_product(&r, 1).unwrap(), want, "MN-major B");
    assert_eq!(
        wg_product(&r, 16).unwrap(),
        want,
        "A and B in shared memory"
    );
    let early = wg_product(&r, 2).unwrap();
    assert!(
        early.iter().all(|v| v.is_nan()),
        "a read before wg_wait went unnoticed"
    );
    let err = wg_product(&r, 4).unwrap_err();
    assert!(err.contains("warpgroup") && err.contains("wgmma"), "{err}");
    let err = wg_product(&r, 8).unwrap_err();
    assert!(err.contains("A-fragment register"), "{err}");
}
