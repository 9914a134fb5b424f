//! Residual connection: `out = a + b`.

pub fn forward(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

/// `da += dout`, `db += dout`.
pub fn backward(da: &mut [f32], db: &mut [f32], dout: &[f32]) {
    for ((x, y), g) in da.iter_mut().zip(db.iter_mut()).zip(dout) {
        *x += g;
        *y += g;
    }
}
