//! Exact W₂² on the line from quantile functions: W₂²(μ, ν) = ∫₀¹ (F⁻¹(u) − G⁻¹(u))² du.

use super::normal::{first_partial_moment, inv_cdf, second_partial_moment};
use super::{check_points, normalised_weights};
use crate::engine::pairwise_sum;
use crate::error::{Error, Result};

/// The points with positive weight, sorted by position, with their normalised weights.
fn sorted_atoms(field_x: &str, x: &[f64], field_w: &str, w: &[f64]) -> Result<Vec<(f64, f64)>> {
    let n = check_points(field_x, x, 1)?;
    let w = normalised_weights(field_w, w, n)?;
    let mut atoms: Vec<(f64, f64)> = x.iter().copied().zip(w).filter(|&(_, w)| w > 0.0).collect();
    atoms.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(atoms)
}

/// Exact W₂² between two weighted clouds on the line, Σ_i wx_i δ_{x_i} and Σ_j wy_j δ_{y_j}.
///
/// Both quantile functions are step functions; the merged breakpoints of the cumulative weights
/// split [0, 1] into at most n + m − 1 intervals on which both are constant, so the integral is
/// the finite sum Σ (mass of the interval)·(x_i − y_j)² (the monotone, north-west-corner
/// coupling). O((n + m) log(n + m)). Weights are normalised to sum 1; they must be finite and
/// ≥ 0 with a positive sum (error [`Error::Invalid`] naming `wx`/`wy` otherwise), and positions
/// finite (naming `x`/`y`).
pub fn w2_squared_1d(x: &[f64], wx: &[f64], y: &[f64], wy: &[f64]) -> Result<f64> {
    let a = sorted_atoms("x", x, "wx", wx)?;
    let b = sorted_atoms("y", y, "wy", wy)?;
    let mut terms = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    let (mut ra, mut rb) = (a[0].1, b[0].1);
    while i < a.len() && j < b.len() {
        let mass = ra.min(rb);
        let d = a[i].0 - b[j].0;
        terms.push(mass * d * d);
        // Equal remainders (e.g. identical weight vectors) advance both sides together.
        ra -= mass;
        rb -= mass;
        if ra <= 0.0 {
            i += 1;
            ra = a.get(i).map_or(0.0, |p| p.1);
        }
        if rb <= 0.0 {
            j += 1;
            rb = b.get(j).map_or(0.0, |p| p.1);
        }
    }
    Ok(pairwise_sum(&terms))
}

/// Exact W₂² between a weighted cloud Σ_k w_k δ_{x_k} on the line and the Gaussian N(mean, std²).
///
/// With the cloud sorted, x_k is the quantile on (u_k, u_{k+1}] of mass w_k; with z = Φ⁻¹(u) and
/// c_k = x_k − mean,
///
/// ∫ (x_k − mean − std·Φ⁻¹(u))² du = c_k² w_k − 2 c_k std M₁ + std² M₂,
///
/// where M₁ = ∫ Φ⁻¹ = φ(z_k) − φ(z_{k+1}) and M₂ = ∫ (Φ⁻¹)² = w_k − [z_{k+1}φ(z_{k+1}) − z_kφ(z_k)]
/// (see [`super::normal::first_partial_moment`] and [`super::normal::second_partial_moment`]).
/// Each term is evaluated as w_k (c_k − std μ_k)² + std² (M₂ − w_k μ_k²) with μ_k = M₁/w_k, the
/// conditional mean of z on the interval. Breakpoints above ½ are computed from the upper tail
/// mass Σ_{i≥k} w_i, so both tails keep their relative accuracy. Errors name `x`, `wx`, `mean` or
/// `std` (which must be finite and ≥ 0; std = 0 gives the distance to the point mass at `mean`).
pub fn w2_squared_1d_gaussian(x: &[f64], wx: &[f64], mean: f64, std: f64) -> Result<f64> {
    if !mean.is_finite() {
        return Err(Error::invalid("mean", mean, "a finite number"));
    }
    if !(std.is_finite() && std >= 0.0) {
        return Err(Error::invalid("std", std, "a finite number ≥ 0"));
    }
    let atoms = sorted_atoms("x", x, "wx", wx)?;
    let n = atoms.len();
    // Breakpoints z_0 = −∞ < z_1 ≤ … ≤ z_{n−1} < z_n = +∞ between consecutive atoms.
    let mut upper = vec![0.0; n + 1];
    for k in (0..n).rev() {
        upper[k] = upper[k + 1] + atoms[k].1;
    }
    let mut z = Vec::with_capacity(n + 1);
    z.push(f64::NEG_INFINITY);
    let mut lower = 0.0;
    for k in 1..n {
        lower += atoms[k - 1].1;
        z.push(if lower <= 0.5 { inv_cdf(lower) } else { -inv_cdf(upper[k].min(0.5)) });
    }
    z.push(f64::INFINITY);
    let terms: Vec<f64> = atoms
        .iter()
        .enumerate()
        .map(|(k, &(xk, w))| {
            let c = xk - mean;
            let m1 = first_partial_moment(z[k], z[k + 1]);
            let m2 = second_partial_moment(w, z[k], z[k + 1]);
            let mu = m1 / w;
            let r = c - std * mu;
            w * r * r + std * std * (m2 - w * mu * mu)
        })
        .collect();
    Ok(pairwise_sum(&terms).max(0.0))
}
