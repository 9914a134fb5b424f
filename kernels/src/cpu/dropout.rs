//! Inverted dropout with counter-based masks: element i of a tensor is kept when
//! SplitMix64(key, i) ≥ p (as a fraction of 2^64) and then scaled by 1/(1 − p). The mask is
//! a pure function of (key, i), so the backward pass recomputes it instead of storing it,
//! and a resumed run drops exactly the elements the uninterrupted run dropped.

/// SplitMix64's output function of `key` and `i`.
#[inline]
fn mix(key: u64, i: u64) -> u64 {
    let mut z = key ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A key for one dropout site of one micro-step.
pub fn key(seed: u64, step: u64, micro: u64, site: u64) -> u64 {
    mix(mix(mix(seed, step), micro), site)
}

/// The factor element `i` is multiplied by: 0 (dropped) or 1/(1 − p).
#[inline]
pub fn factor(p: f32, key: u64, i: u64) -> f32 {
    if p <= 0.0 {
        return 1.0;
    }
    if mix(key, i) < (p as f64 * 2f64.powi(64)) as u64 {
        0.0
    } else {
        1.0 / (1.0 - p)
    }
}

/// Applies the mask in place (forward: to the values; backward: to their gradients).
pub fn apply(x: &mut [f32], p: f32, key: u64) {
    if p <= 0.0 {
        return;
    }
    let threshold = (p as f64 * 2f64.powi(64)) as u64;
    let scale = 1.0 / (1.0 - p);
    for (i, v) in x.iter_mut().enumerate() {
        if mix(key, i as u64) < threshold {
            *v = 0.0;
        } else {
            *v *= scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_about_p_and_keeps_the_mean() {
        let mut x = vec![1.0f32; 100_000];
        apply(&mut x, 0.1, key(1, 2, 0, 3));
        let dropped = x.iter().filter(|&&v| v == 0.0).count();
        assert!((9_000..11_000).contains(&dropped), "{dropped}");
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
        assert!((mean - 1.0).abs() < 0.01, "{mean}");
        // The same key drops the same elements (the backward pass relies on it).
        let mut y = vec![1.0f32; 100_000];
        apply(&mut y, 0.1, key(1, 2, 0, 3));
        assert_eq!(x, y);
        let mut z = vec![1.0f32; 100_000];
        apply(&mut z, 0.1, key(1, 2, 1, 3));
        assert_ne!(x, z);
        // `factor` is the same mask, element by element.
        for (i, v) in x.iter().enumerate().take(1000) {
            assert_eq!(*v, factor(0.1, key(1, 2, 0, 3), i as u64));
        }
        let mut w = vec![2.0f32; 10];
        apply(&mut w, 0.0, 5);
        assert_eq!(w, vec![2.0; 10]);
    }
}
