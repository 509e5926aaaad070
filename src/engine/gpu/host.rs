//! Host-side preparation: the packing of points into the shaders' scaled vec4 layout, and the
//! plain structs mirroring the WGSL uniforms. The model's f64 quantities at the particles come
//! from [`crate::model::Model::at_points`], as for the CPU engine.

use crate::model::{Gaussian, Space};

/// "No coefficient" in a packed point (mirrors the prelude's SENTINEL).
pub(crate) const SENTINEL: f32 = -3.0e38;
/// A zero weight's log on the device: −∞ would turn into NaN in differences, this stays finite
/// and exp() of it is 0.
pub(crate) const LOG_ZERO: f32 = -1.0e30;
/// Log-weights at or below this read back as −∞.
pub(crate) const LOG_ZERO_READ: f64 = -1.0e29;
/// "No particle" in the index slots of the stats and control buffers.
pub(crate) const NONE: u32 = u32::MAX;

/// Offsets in the stats buffer (mirrors the prelude's S_*).
pub(crate) mod stats {
    pub const MASS: usize = 0;
    pub const W2: usize = 2;
    pub const WDF: usize = 3;
    pub const WE: usize = 4;
    pub const BAD_RATE: usize = 10;
    pub const MAX_A: usize = 11;
    pub const MAX_ABS_A: usize = 12;
    pub const FDATA: usize = 13;
    pub const MOMENTS: usize = 16;
    pub const LEN: usize = 32;
}

/// Offsets in the control buffer (mirrors the prelude's C_* and halt codes).
pub(crate) mod control {
    pub const HALTED: usize = 0;
    pub const STEPS: usize = 1;
    pub const PARTICLE: usize = 2;
    pub const VALUE: usize = 3;
    pub const H: usize = 4;
    pub const BAD_LOG_WEIGHT: usize = 5;
    pub const CAPPED: usize = 6;
    pub const ELAPSED_LO: usize = 8;
    pub const ELAPSED_HI: usize = 9;
    pub const LEN: usize = 16;

    pub const RUNNING: u32 = 0;
    pub const ERR_POSITIVITY: u32 = 2;
    pub const ERR_RATE: u32 = 3;
    pub const ERR_CUTOFF: u32 = 5;
    // DONE (1) and ERR_LOG_WEIGHT (4) need no host handling: the first ends a loop normally, the
    // second is recognised by the BAD_LOG_WEIGHT word.

    /// A control block at the start of a device loop.
    pub fn fresh() -> [u32; LEN] {
        let mut c = [0u32; LEN];
        c[BAD_LOG_WEIGHT] = super::NONE;
        c
    }
}

/// The kernel sums' parameters (mirrors `KernelParams` in kernel_params.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct KernelParams {
    pub n_targets: u32,
    pub n_sources: u32,
    /// Sources per chunk when the sources are split (0: one pass over all of them).
    pub chunk_len: u32,
    /// Workgroups along the targets per chunk (split sources only).
    pub target_groups: u32,
    pub log_norm: f32,
    /// Torus side in tile units (0 on R^d).
    pub side: f32,
    /// Scaled length of one tile unit (see [`Layout::tile_units`]).
    pub unit: f32,
    pub unit2: f32,
    /// 1.5·2^23 (see `exp2_fma` in kernel_pair.wgsl).
    pub rounder: f32,
    /// Cell sums only (see log_kernel_sum_cells.wgsl; zero otherwise): log₂ δ.
    pub log2_tolerance: f32,
    /// The largest truncation bound before the device loop halts.
    pub max_error: f32,
    pub n_cells: u32,
    /// Blocks of at most one workgroup's targets in one cell.
    pub n_blocks: u32,
    /// The slot of the truncation buffer this sum's bound goes to.
    pub slot: u32,
    /// 2^(−2L²) for the scaled torus side L (0 on R^d): the ratio between successive periodic
    /// images' factors (`image_ratio` in kernel_pair.wgsl).
    pub image_decay: f32,
    pub pad: u32,
    /// Cells per coordinate (1 beyond d).
    pub counts: [u32; 4],
}

impl KernelParams {
    /// The parameters of an nt × ns sum of `kernel` on points packed in `layout`.
    pub fn new(kernel: &Gaussian, layout: &Layout, nt: usize, ns: usize, chunk_len: u32, target_groups: u32) -> Self {
        let (side, unit) = layout.tile_units();
        KernelParams {
            n_targets: nt as u32,
            n_sources: ns as u32,
            chunk_len,
            target_groups,
            log_norm: kernel.log_norm as f32,
            side: side as f32,
            unit: unit as f32,
            unit2: (unit * unit) as f32,
            rounder: 12582912.0,
            log2_tolerance: 0.0,
            max_error: 0.0,
            n_cells: 0,
            n_blocks: 0,
            slot: 0,
            image_decay: layout.side.map_or(0.0, |l| (-2.0 * (l * layout.scale).powi(2)).exp2()) as f32,
            pad: 0,
            counts: [1; 4],
        }
    }
}

/// Two counts (n and a second one: groups or Q), as most element-wise shaders take, the number
/// of data terms (`summarise` only) and the fixed-point unit where a shader reads coordinates.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Counts {
    pub n: u32,
    pub aux: u32,
    pub m_data: u32,
    pub unit: f32,
}

/// Mirrors `MergeParams` in log_sum_merge.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MergeParams {
    pub n_targets: u32,
    pub chunks: u32,
    pub pad0: u32,
    pub log_norm: f32,
}

/// Mirrors `Params` in net_residuals.wgsl and npmle_coefficients.wgsl: a count, a second count
/// (chunks; unused by the NPMLE), the offset in the data-term buffer, and two constants.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct DataParams {
    pub m: u32,
    pub chunks: u32,
    pub offset: u32,
    pub pad0: u32,
    pub a: f32,
    pub b: f32,
    pub pad1: [f32; 2],
}

/// Mirrors `DivParams` in divergence_derivative.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct DivParams {
    pub n: u32,
    pub q: u32,
    pub has_divergence: u32,
    pub chunks: u32,
    pub sigma: f32,
    pub ln_n: f32,
    pub log_norm: f32,
    pub pad0: f32,
}

/// Mirrors `FinalParams` in summarise_final.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct FinalParams {
    pub groups: u32,
    pub step: u32,
    pub pad0: u32,
    pub pad1: u32,
}

/// Mirrors `StepParams` in step_control.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct StepParams {
    pub auto_h: u32,
    pub exponential: u32,
    pub n_fixed: u32,
    pub has_until: u32,
    pub h_fixed: f32,
    pub h_last: f32,
    pub safety: f32,
    pub h_max: f32,
    pub scale: f32,
    pub pad0: f32,
    pub total_lo: u32,
    pub total_hi: u32,
}

/// Largest relative error of `exp2_fma`'s minimax polynomial of 2^f on [−1/2, 1/2] (kernel_pair.wgsl,
/// `EXP2_MINIMAX`), by degree from 2 to 7, measured on a grid of 20001 points in f64.
pub(crate) const EXP2_ERROR: [f64; 6] = [1.726e-3, 7.484e-5, 2.595e-6, 7.496e-8, 1.856e-9, 4.021e-11];

/// Scaled half-extent above which coordinates are stored in fixed point (see [`Layout`]).
pub(crate) const FIXED_ABOVE: f64 = 8.0;

/// How model coordinates become the shaders' packed ones. The scaled coordinate is
/// x' = (x − center) · scale with scale = √(log₂e) / (ε√2), so that exp(−|x − y|² / (2ε²)) =
/// exp2(−|x′ − y′|²). The centre is the middle of the torus cell or of the points' bounding box,
/// which keeps |x′| as small as it can be.
///
/// An f32 coordinate carries an absolute error of 6e-8 |x′|, and so does every difference x′ − y′;
/// once |x′| is large (ε small against the domain) that error matters for the near pairs that
/// dominate the sum. So when the scaled half-extent exceeds [`FIXED_ABOVE`], coordinates are
/// stored as 32-bit fixed point instead: differences are then exact integers (on the torus the
/// wrapping difference is the minimum image) and only their conversion to f32 rounds.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// The centre c.
    pub center: Vec<f64>,
    /// The scale s.
    pub scale: f64,
    /// Fixed point (true) or f32 coordinates.
    pub fixed: bool,
    /// Scaled length of one fixed-point step.
    pub unit: f64,
    /// The torus side L (None on R^d).
    side: Option<f64>,
}

impl Layout {
    /// The layout for points `sets` (particles, and quadrature nodes when there are any).
    pub fn new(space: &Space, sets: &[&[f64]], width: f64) -> Self {
        let d = space.dim;
        let scale = std::f64::consts::LOG2_E.sqrt() / (width * std::f64::consts::SQRT_2);
        match space.side() {
            Some(l) => {
                let fixed = 0.5 * l * scale > FIXED_ABOVE;
                Layout { center: vec![0.5 * l; d], scale, fixed, unit: l * scale / 2f64.powi(32), side: Some(l) }
            }
            None => {
                let mut lo = vec![f64::INFINITY; d];
                let mut hi = vec![f64::NEG_INFINITY; d];
                for set in sets {
                    for x in set.chunks_exact(d) {
                        for k in 0..d {
                            lo[k] = lo[k].min(x[k]);
                            hi[k] = hi[k].max(x[k]);
                        }
                    }
                }
                let center: Vec<f64> = lo.iter().zip(&hi).map(|(a, b)| 0.5 * (a + b)).collect();
                let half = lo.iter().zip(&hi).map(|(a, b)| 0.5 * (b - a)).fold(0.0, f64::max);
                let fixed = half * scale > FIXED_ABOVE;
                // |x′| ≤ half·s maps to at most 2^30 steps, so differences fit an i32.
                Layout { center, scale, fixed, unit: (half * scale).max(1e-30) / 2f64.powi(30), side: None }
            }
        }
    }

    /// Like [`Layout::new`] but always in fixed point, so that the packing (and the shader built
    /// for it) does not change with the width: iterative callers that change the width every
    /// pass (Sinkhorn's ε-scaling) keep one pipeline. Fixed point is at least as accurate.
    pub fn fixed_point(space: &Space, sets: &[&[f64]], width: f64) -> Self {
        Layout { fixed: true, ..Layout::new(space, sets, width) }
    }

    /// The kernel shader's tile units: (torus side in them, 0 on R^d; their scaled length). f32
    /// coordinates are staged as they are (unit 1); fixed point is staged as whole multiples of
    /// 2^16 steps plus a fraction (see kernel_pair.wgsl), so the unit is 2^16 steps and the
    /// torus, 2^32 steps around, is 2^16 units.
    pub fn tile_units(&self) -> (f64, f64) {
        let side = self.side.map_or(0.0, |l| l * self.scale);
        if self.fixed {
            let unit = 65536.0 * self.unit;
            (if self.side.is_some() { 65536.0 } else { 0.0 }, unit)
        } else {
            (side, 1.0)
        }
    }

    /// Whether a kernel with periodic images must sum the farther image on each side too: the
    /// farther image of a coordinate x with |x| ≤ L/2 is at distance ≥ L, so over d coordinates
    /// all of them add at most 2d·exp2(−L²) (scaled L) relative to K(0); they are kept unless
    /// that is below a tenth of the kernel's tolerance.
    pub fn far_images(&self, dim: usize) -> bool {
        self.side.is_some_and(|l| {
            let ls = l * self.scale;
            2.0 * dim as f64 * (-(ls * ls)).exp2() >= 0.1 * crate::model::PERIODIC_TOLERANCE
        })
    }

    /// The least degree k (2 to 7) of `exp2_fma`'s minimax polynomial for a kernel with `images`
    /// images per side in dimension `dim`: its relative error [`EXP2_ERROR`]`[k − 2]` on an image
    /// term g of one coordinate costs at most 2^(d−1) · 2^(−(L − |x|)²) · error ≤ 2^(d−1) ·
    /// 2^(−L²/4) · error of K(0) (scaled L; the other coordinates' factors are below 2), summed over
    /// 2·images terms; the degree keeps that below 1e-8. In the paper's setting (ε = 0.1, L = 1,
    /// d = 3) that is degree 3.
    pub fn exp2_degree(&self, dim: usize, images: u32) -> u32 {
        let Some(l) = self.side.map(|l| l * self.scale) else { return 7 };
        let scale = 2f64.powi(dim as i32 - 1) * (-(l * l) / 4.0).exp2() * 2.0 * f64::from(images.max(1));
        (2..=7).find(|k| scale * EXP2_ERROR[*k as usize - 2] <= 1e-8).unwrap_or(7)
    }

    /// The least argument `exp2_fma` gets for a kernel with `images` images per side (`far`: the
    /// farther ones too): −n²L² for the nearer image n (at x = 0) and −n(n + 1)L² for the farther
    /// one (at |x| = L/2), scaled L. The shader needs it above −126 (a test checks every width and
    /// dimension).
    #[cfg(test)]
    fn least_image_argument(&self, images: u32, far: bool) -> f64 {
        let l = self.side.map_or(0.0, |l| l * self.scale);
        let n = f64::from(images);
        -(if far { n * (n + 1.0) } else { n * n }) * l * l
    }

    /// Whether every point can be packed: always, except in fixed point on R^d, where the
    /// coordinates must lie in the box the layout was made for (so that differences fit an i32).
    pub fn contains(&self, points: &[f64], dim: usize) -> bool {
        if !self.fixed || self.side.is_some() {
            return true;
        }
        let limit = 2f64.powi(30);
        points
            .chunks_exact(dim)
            .all(|x| x.iter().zip(&self.center).all(|(v, c)| ((v - c) * self.scale / self.unit).abs() <= limit))
    }

    /// Points (rows of d) packed as `packed` vec4s each (as u32 bit patterns), the coefficient
    /// slot set to SENTINEL.
    pub fn pack(&self, points: &[f64], dim: usize, packed: usize) -> Vec<[u32; 4]> {
        let mut out = vec![[0u32; 4]; points.len() / dim * packed];
        for (x, dst) in points.chunks_exact(dim).zip(out.chunks_exact_mut(packed)) {
            for (k, (v, c)) in x.iter().zip(&self.center).enumerate() {
                let rel = v - c;
                dst[k / 4][k % 4] = match (self.fixed, self.side) {
                    // The cell [−L/2, L/2) onto the whole u32 circle: wrapping differences are
                    // minimum images.
                    (true, Some(l)) => ((rel / l * 2f64.powi(32)).round() as i64) as u32,
                    (true, None) => ((rel * self.scale / self.unit).round() as i32) as u32,
                    // The cell [−L/2, L/2): differences then lie in (−L, L), where the shader's
                    // min(|d|, L − |d|) gives the minimum-image distance.
                    (false, Some(l)) => (((rel - l * (rel / l).round()) * self.scale) as f32).to_bits(),
                    (false, None) => ((rel * self.scale) as f32).to_bits(),
                };
            }
            dst[packed - 1][3] = SENTINEL.to_bits();
        }
        out
    }
}

/// A log-weight as the device stores it.
pub(crate) fn to_device_log_weight(l: f64) -> f32 {
    // −∞ and anything that small (which f32 would round to −∞) is a zero weight.
    if l <= f64::from(LOG_ZERO) { LOG_ZERO } else { l as f32 }
}

/// A log-weight read back from the device.
pub(crate) fn from_device_log_weight(l: f32) -> f64 {
    let v = f64::from(l);
    if v <= LOG_ZERO_READ { f64::NEG_INFINITY } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Domain, Gaussian};

    /// `exp2_fma` on the torus: degree 3 in the paper's setting (ε = 0.1, L = 1, d = 3), and
    /// every image argument of every width with images, in every dimension, above −126, where
    /// the shader's exponent bits need it (kernel_pair.wgsl has no clamp).
    #[test]
    fn image_exponentials_take_degree_3_in_the_papers_setting_and_stay_above_minus_126() {
        let space = Space::new(3, Domain::Torus { side: 1.0 }).unwrap();
        let kernel = Gaussian::new(&space, 0.1, true, "epsilon").unwrap();
        let layout = Layout::new(&space, &[], kernel.width);
        assert_eq!((kernel.images, layout.far_images(3)), (1, false));
        assert_eq!(layout.exp2_degree(3, kernel.images), 3);
        let mut least: f64 = 0.0;
        for dim in 1..=crate::model::MAX_DIM {
            let space = Space::new(dim, Domain::Torus { side: 1.0 }).unwrap();
            for k in 1..=1000 {
                let width = k as f64 / 1000.0;
                let kernel = Gaussian::new(&space, width, true, "epsilon").unwrap();
                let layout = Layout::new(&space, &[], width);
                if kernel.images > 0 {
                    least = least.min(layout.least_image_argument(kernel.images, layout.far_images(dim)));
                }
            }
        }
        assert!(least > -126.0 && least < -100.0, "{least}");
    }
}
