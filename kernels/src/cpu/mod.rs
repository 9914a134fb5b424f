//! CPU reference of every op, and the thread helper they share.

pub mod adamw;
pub mod attention;
pub mod dropout;
pub mod encoder;
pub mod gelu;
pub mod layernorm;
pub mod loss;
pub mod matmul;
pub mod residual;

#[cfg(test)]
pub(crate) mod check;

/// Rows per block of a row reduction (fixed, so sums do not depend on the thread count).
pub const ROW_BLOCK: usize = 64;

/// Runs `f(first_row, rows)` over consecutive blocks of `block` rows of `out` (rows of
/// `width` values) on up to `threads` threads; each block is handed to exactly one call.
pub fn par_blocks<F>(out: &mut [f32], width: usize, block: usize, threads: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let rows = out.len().checked_div(width).unwrap_or(0);
    let block = block.max(1);
    let blocks: Vec<(usize, &mut [f32])> = out
        .chunks_mut(block * width.max(1))
        .enumerate()
        .map(|(i, c)| (i * block, c))
        .collect();
    let threads = threads.clamp(1, blocks.len().max(1));
    if threads == 1 || rows <= block {
        for (first, chunk) in blocks {
            f(first, chunk);
        }
        return;
    }
    let queue = std::sync::Mutex::new(blocks.into_iter());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some((first, chunk)) = next else { break };
                f(first, chunk);
            });
        }
    });
}

/// Sums per-block partial vectors in block order into `acc` (`acc += Σ partial`).
pub fn add_partials(acc: &mut [f32], partials: &[f32]) {
    if acc.is_empty() {
        return;
    }
    for p in partials.chunks_exact(acc.len()) {
        for (a, v) in acc.iter_mut().zip(p) {
            *a += v;
        }
    }
}

/// The number of threads to use by default: every core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
