//! The kernel simulator (`harman_kernels::cuda::sim`) is strict where the hardware is
//! unforgiving: small kernels with a missing barrier, a read of an asynchronous copy before
//! waiting for it, and a shuffle only half a warp reaches must fail there, and their
//! correct twins pass. (The backend's own kernels run on it in `cuda_ops.rs` and the
//! training tests when no GPU is present.) Skipped, with the reason printed, where there is
//! no C++ compiler.

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
    kernels: &["shift", "copy_async", "lane_sum"],
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
            .launch(name, (1, 1, 1), threads, &mut args)
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
