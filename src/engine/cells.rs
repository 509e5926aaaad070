//! Cutoff kernel sums on a cell grid built once: positions never move, so the neighbours of
//! every point are found by the same grid at every step, and a sum costs O(N·k) for k
//! neighbours instead of O(N²).
//!
//! The Gaussian K_ε falls below δ·K_ε(0) beyond the cutoff radius r_c = ε·√(2 ln(1/δ)). Sources
//! are sorted into cells of side ≥ r_c, so every source outside a target's 3^d neighbouring cells
//! is farther than r_c and is dropped. What is dropped is at most δ·K_ε(0) times the mass
//! outside the neighbourhood; that mass is accumulated beside the sum (no extra pass), which
//! gives for every target a relative truncation bound
//!
//! ```text
//! bound_t = δ·K_ε(0)·(Σ_s c_s − Σ_{s near t} c_s) / Σ_{s near t} c_s K_ε(t, y_s)
//! ```
//!
//! On the torus the kernel is the periodised one (its images add at most 1e-7 relative to the
//! dropped terms, SPEC §3). The grid is used only where it saves work (d ≤ 4, more than 3 cells
//! per coordinate on the torus, the neighbourhood a small part of the domain); `CellGrid::new`
//! returns `None` otherwise and callers sum all pairs.

use super::cpu::{KernelExponent, log_sum_merge};
use crate::error::{Error, Result};
use crate::model::{Gaussian, Space};
use rayon::prelude::*;

/// Largest dimension with cells (3^d neighbour cells; beyond d = 4 they cover most of the
/// domain for any useful radius).
pub const MAX_CELL_DIM: usize = 4;

/// How the engine truncates the kernel (`[kernel] cutoff`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Cutoff {
    /// Every pair, always.
    None,
    /// Cells with the default tolerance where they save work and the engine has no cheaper
    /// exact path (the CPU engine keeps the N×N matrix up to N = 16384; the GPU engine sums all
    /// pairs up to N = 2^16).
    Auto,
    /// Cells wherever they save work, dropping pairs with K < tolerance·K(0); a run stops when a
    /// relative truncation bound exceeds `max_error`.
    Tolerance {
        /// δ: pairs with K_ε < δ·K_ε(0) are dropped.
        tolerance: f64,
        /// The largest relative truncation bound a kernel sum may have.
        max_error: f64,
    },
}

impl Cutoff {
    /// δ of `Auto`. The relative bound of a particle's sum is about δ over the share of the mass
    /// within a few ε of it (at uniform weights ~ N·(2π)^{d/2} ε^d / volume of N particles), so
    /// δ = 1e-10 keeps it near 4e-6 for N = 10⁶, ε = 0.002 on the unit square, well under the
    /// default max_error, for a radius of 6.8 ε.
    pub const DEFAULT_TOLERANCE: f64 = 1e-10;
    /// The default `max_error`.
    pub const DEFAULT_MAX_ERROR: f64 = 1e-4;

    /// (δ, max_error), or `None` for `Cutoff::None`.
    pub fn parameters(&self) -> Option<(f64, f64)> {
        match *self {
            Cutoff::None => None,
            Cutoff::Auto => Some((Self::DEFAULT_TOLERANCE, Self::DEFAULT_MAX_ERROR)),
            Cutoff::Tolerance { tolerance, max_error } => Some((tolerance, max_error)),
        }
    }

    /// Checks δ ∈ (0, 1) and max_error > 0; `field` is the config key.
    pub fn validate(&self, field: &str) -> Result<()> {
        if let Cutoff::Tolerance { tolerance, max_error } = *self {
            if !(tolerance > 0.0 && tolerance < 1.0) {
                return Err(Error::invalid(format!("{field}.tolerance"), tolerance, "a number in (0, 1)"));
            }
            crate::error::check_positive(format!("{field}.max_error"), max_error)?;
        }
        Ok(())
    }

    /// The cutoff radius of `kernel` at tolerance δ: K(r_c) = δ·K(0).
    pub fn radius(kernel: &Gaussian, tolerance: f64) -> f64 {
        kernel.width * (2.0 * (1.0 / tolerance).ln()).sqrt()
    }
}

/// The `kernel.cutoff` error of a relative truncation bound above `max_error`, as both engines
/// report it.
pub(crate) fn truncation_error(bound: f64, target: usize, step: u64, max_error: f64) -> Error {
    cutoff_error("kernel.cutoff", bound, &format!("target {target} in step {step}"), max_error, "cutoff = \"none\"")
}

/// Whether `e` is [`truncation_error`]'s error.
pub(crate) fn is_truncation_error(e: &Error) -> bool {
    matches!(e, Error::Invalid { field, .. } if field == "kernel.cutoff")
}

/// The error of a relative truncation bound above `max_error` for the option `field`: `place`
/// says where it was found, `none` how to ask for all pairs.
pub(crate) fn cutoff_error(field: &str, bound: f64, place: &str, max_error: f64, none: &str) -> Error {
    Error::invalid(
        field,
        format!("a relative truncation bound of {bound:.3e} at {place}"),
        format!(
            "at most max_error = {max_error:e}: the target's cell neighbourhood holds little of the mass while \
             far mass dominates; use a smaller tolerance, a larger max_error, or {none}"
        ),
    )
}

/// Sources sorted by cell: cell `c` holds `order[starts[c]..starts[c + 1]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CellGrid {
    dim: usize,
    /// Cells per coordinate.
    counts: Vec<usize>,
    /// Cell side per coordinate (≥ the radius).
    side: Vec<f64>,
    /// Lower corner of cell 0 (0 on the torus).
    origin: Vec<f64>,
    /// The torus side, or `None` on R^d.
    torus: Option<f64>,
    starts: Vec<u32>,
    order: Vec<u32>,
}

impl CellGrid {
    /// The grid of `sources` (rows of d) for cutoff `radius`, or `None` where cells would not
    /// save work: d > 4, fewer than 3 cells per coordinate on the torus, or neighbourhoods
    /// holding more than half the domain's cells. Cells are never more than 4N + 16 in all (so
    /// memory stays O(N)): where the radius would ask for more, they are made larger.
    pub fn new(space: &Space, sources: &[f64], radius: f64) -> Option<Self> {
        Self::shared(space, &[sources], radius).and_then(|mut grids| grids.pop())
    }

    /// One grid over each of `sets` (rows of d), all on one geometry: the cells of
    /// [`CellGrid::new`] for all their points together (on R^d, the box of all of them). A point
    /// of one set is then among the 3^d cells around a point of another exactly when the reverse
    /// holds, so the pairs a cell sum keeps are the same in both directions (what Sinkhorn's two
    /// half-steps need to solve one truncated problem). `None` as for [`CellGrid::new`].
    pub fn shared(space: &Space, sets: &[&[f64]], radius: f64) -> Option<Vec<Self>> {
        let d = space.dim;
        let n: usize = sets.iter().map(|s| s.len() / d).sum();
        if d > MAX_CELL_DIM || n == 0 || !(radius.is_finite() && radius > 0.0) {
            return None;
        }
        let (origin, extent): (Vec<f64>, Vec<f64>) = match space.side() {
            Some(l) => (vec![0.0; d], vec![l; d]),
            None => {
                let mut lo = vec![f64::INFINITY; d];
                let mut hi = vec![f64::NEG_INFINITY; d];
                for x in sets.iter().flat_map(|s| s.chunks_exact(d)) {
                    for k in 0..d {
                        lo[k] = lo[k].min(x[k]);
                        hi[k] = hi[k].max(x[k]);
                    }
                }
                let extent = lo.iter().zip(&hi).map(|(a, b)| (b - a).max(radius)).collect();
                (lo, extent)
            }
        };
        let max_cells = 4.0 * n as f64 + 16.0;
        let mut cell = radius;
        let count = |cell: f64| -> Vec<usize> {
            extent
                .iter()
                .map(|e| if space.side().is_some() { (e / cell).floor() } else { (e / cell).floor() + 1.0 })
                .map(|c| c.max(1.0) as usize)
                .collect()
        };
        while count(cell).iter().map(|c| *c as f64).product::<f64>() > max_cells {
            cell *= 1.25;
        }
        let counts = count(cell);
        let total: usize = counts.iter().product();
        let neighbourhood: usize = counts.iter().map(|c| (*c).min(3)).product();
        if (space.side().is_some() && counts.iter().any(|c| *c < 3)) || 2 * neighbourhood > total {
            return None;
        }
        let side: Vec<f64> = match space.side() {
            Some(l) => counts.iter().map(|c| l / *c as f64).collect(),
            None => vec![cell; d],
        };
        let geometry = CellGrid { dim: d, counts, side, origin, torus: space.side(), starts: vec![], order: vec![] };
        Some(sets.iter().map(|s| geometry.sorted(s)).collect())
    }

    /// This grid's geometry with `sources` sorted into its cells.
    fn sorted(&self, sources: &[f64]) -> Self {
        let total: usize = self.counts.iter().product();
        let mut grid =
            CellGrid { starts: vec![0; total + 1], order: vec![0; sources.len() / self.dim], ..self.clone() };
        // Counting sort of the sources by cell.
        let cells: Vec<usize> = sources.chunks_exact(self.dim).map(|x| grid.linear(&grid.coords(x))).collect();
        for c in &cells {
            grid.starts[c + 1] += 1;
        }
        for c in 0..total {
            grid.starts[c + 1] += grid.starts[c];
        }
        let mut next = grid.starts.clone();
        for (i, c) in cells.iter().enumerate() {
            grid.order[next[*c] as usize] = i as u32;
            next[*c] += 1;
        }
        grid
    }

    /// The cell coordinates of x (wrapped on the torus; possibly outside the grid on R^d).
    pub(crate) fn coords(&self, x: &[f64]) -> Vec<isize> {
        (0..self.dim)
            .map(|k| {
                let c = ((x[k] - self.origin[k]) / self.side[k]).floor() as isize;
                let n = self.counts[k] as isize;
                match self.torus {
                    Some(_) => c.rem_euclid(n),
                    None => c.clamp(-2, n + 1),
                }
            })
            .collect()
    }

    fn linear(&self, c: &[isize]) -> usize {
        c.iter().zip(&self.counts).rev().fold(0, |acc, (ck, nk)| acc * nk + *ck as usize)
    }

    /// Cells per coordinate.
    pub(crate) fn counts(&self) -> &[usize] {
        &self.counts
    }

    /// Where each cell's sources start in [`CellGrid::order`], then the number of sources.
    pub(crate) fn starts(&self) -> &[u32] {
        &self.starts
    }

    /// The sources' indices, cell by cell.
    pub(crate) fn order(&self) -> &[u32] {
        &self.order
    }

    /// How many (target, source) pairs a cell sum over `targets` evaluates.
    pub fn pairs(&self, targets: &[f64]) -> u64 {
        targets
            .par_chunks_exact(self.dim)
            .map(|t| {
                let mut k = 0u64;
                self.for_each_near(t, |c| k += u64::from(self.starts[c + 1] - self.starts[c]));
                k
            })
            .sum()
    }

    /// The sources of cell `c`.
    fn cell(&self, c: usize) -> &[u32] {
        &self.order[self.starts[c] as usize..self.starts[c + 1] as usize]
    }

    /// Calls `f` with every cell among the 3^d around `x` (fewer at the edge of R^d's box).
    fn for_each_near(&self, x: &[f64], mut f: impl FnMut(usize)) {
        let centre = self.coords(x);
        let mut cell = vec![0isize; self.dim];
        'offsets: for code in 0..3usize.pow(self.dim as u32) {
            let mut rest = code;
            for k in 0..self.dim {
                let n = self.counts[k] as isize;
                let c = centre[k] + (rest % 3) as isize - 1;
                rest /= 3;
                cell[k] = match self.torus {
                    Some(_) => c.rem_euclid(n),
                    None if (0..n).contains(&c) => c,
                    None => continue 'offsets,
                };
            }
            f(self.linear(&cell));
        }
    }
}

/// log Σ_{s in c} exp(log_coeffs\[s\]) for every cell c of `grid` (−∞ for an empty one): computed
/// once per sum, so that a target's neighbourhood mass costs 3^d merges rather than an
/// exponential per pair (the CPU twin of cell_mass.wgsl).
pub fn cell_mass(grid: &CellGrid, log_coeffs: &[f64]) -> Vec<f64> {
    (0..grid.starts.len() - 1)
        .into_par_iter()
        .map(|c| log_sum_merge(grid.cell(c).iter().map(|j| (log_coeffs[*j as usize], 1.0))))
        .collect()
}

/// A target's relative truncation bound δ·K(0)·(total − near)/value from the logs of the total
/// mass, its neighbourhood's mass and its sum, with `log_drop` = log(δ·K(0)): 0 when no mass is
/// outside, ∞ when the sum is empty (the CPU twin of cell_bound.wgsl, which takes the largest).
pub fn cell_bound(log_drop: f64, total: f64, near: f64, value: f64) -> f64 {
    // log(total − near), computed without cancellation.
    let far = if near >= total { f64::NEG_INFINITY } else { total + (-(near - total).exp()).ln_1p() };
    if far == f64::NEG_INFINITY {
        0.0
    } else if value == f64::NEG_INFINITY {
        f64::INFINITY
    } else {
        (log_drop + far - value).exp()
    }
}

/// log Σ_{s near t} exp(log_coeffs\[s\]) K(t, y_s) for every target t, over the sources within the
/// 3^d cells of `grid` (built on `sources` for the kernel's cutoff radius at `tolerance`), and
/// each target's relative truncation bound (see the module's documentation): the cutoff twin of
/// [`super::cpu::log_kernel_sum`], and the CPU twin of log_kernel_sum_cells.wgsl (with
/// [`cell_mass`] and [`cell_bound`]).
pub fn log_kernel_sum_cells(
    space: &Space,
    kernel: &Gaussian,
    grid: &CellGrid,
    tolerance: f64,
    targets: &[f64],
    sources: &[f64],
    log_coeffs: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let exponent = KernelExponent::new(space, kernel);
    let d = space.dim;
    let cell_mass = cell_mass(grid, log_coeffs);
    let total = log_sum_merge(cell_mass.iter().map(|m| (*m, 1.0)));
    let log_drop = kernel.log_norm + tolerance.ln();
    targets
        .par_chunks_exact(d)
        .map_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(e, partials, near), t| {
                // Per neighbour cell: its exponents, shifted by their maximum and summed (one
                // exponential per pair, no branch), merged in cell order like log_kernel_sum's blocks.
                // The buffers are the thread's own, reused from target to target.
                partials.clear();
                near.clear();
                grid.for_each_near(t, |c| {
                    e.clear();
                    e.extend(grid.cell(c).iter().map(|&j| {
                        let j = j as usize;
                        log_coeffs[j] + exponent.log_k(t, &sources[j * d..(j + 1) * d])
                    }));
                    let shift = e.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    if shift > f64::NEG_INFINITY {
                        partials.push((shift, e.iter().map(|x| (x - shift).exp()).sum::<f64>()));
                    }
                    near.push((cell_mass[c], 1.0));
                });
                let value = log_sum_merge(partials.iter().copied()) + exponent.log_norm;
                let near = log_sum_merge(near.iter().copied());
                (value, cell_bound(log_drop, total, near, value))
            },
        )
        .unzip()
}
