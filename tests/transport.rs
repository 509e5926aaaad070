//! W₂ in `transport`: exact 1-D (clouds and Gaussians), exact small-N network simplex, entropic
//! Sinkhorn divergence. Every expected value is computed independently of the code under test
//! (closed forms, 50-digit references, brute force, an LP solver); tolerances are stated with
//! the reason for their size.

use frflow::Error;
use frflow::transport::normal::{cdf, inv_cdf, pdf};
use frflow::transport::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::f64::consts::PI;

fn uniform_cloud(rng: &mut ChaCha8Rng, n: usize, d: usize, low: f64, width: f64) -> Vec<f64> {
    (0..n * d).map(|_| low + width * rng.random::<f64>()).collect()
}

fn random_weights(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| 0.1 + rng.random::<f64>()).collect()
}

fn normalised(w: &[f64]) -> Vec<f64> {
    let s: f64 = w.iter().sum();
    w.iter().map(|v| v / s).collect()
}

fn assert_invalid<T: std::fmt::Debug>(r: frflow::Result<T>, field: &str) {
    match r {
        Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected Error::Invalid naming {field}, got {other:?}"),
    }
}

// ---------------------------------------------------------------- standard normal

/// Φ⁻¹ against 50-digit references (mpmath `findroot` on log `ncdf` at the exact f64 p, the upper
/// half as −Φ⁻¹(1 − p)), rounded to the nearest f64. Tolerance 4e-15 relative (≈ 18 ulp): Acklam
/// plus one Halley step leaves an iteration error ~(1e-9)³, so what is left is the rounding of
/// erfc, exp and the step.
#[test]
fn inverse_normal_cdf_matches_references() {
    let cases = [
        (1e-300, -37.0470962993612),
        (1e-100, -21.273453560965326),
        (1e-20, -9.262340089798407),
        (1e-10, -6.361340902404057),
        (0.001, -3.0902323061678136),
        (0.02425, -1.972961051311885),
        (0.1, -1.2815515655446004),
        (0.3, -0.5244005127080408),
        (0.7, 0.5244005127080407),
        (0.975, 1.9599639845400538),
        (0.999, 3.090232306167813),
        (0.9999999999990905, 7.047700256664409),
        (0.8413447460685429, 0.9999999999999999),
    ];
    let mut worst: f64 = 0.0;
    for (p, z) in cases {
        let rel = (inv_cdf(p) - z).abs() / z.abs();
        worst = worst.max(rel);
        assert!(rel < 4e-15, "Φ⁻¹({p:e}) = {} vs {z}: relative error {rel:e}", inv_cdf(p));
    }
    println!("worst relative error of Φ⁻¹: {worst:e}");
    assert_eq!(inv_cdf(0.5), 0.0);
    assert_eq!(inv_cdf(0.0), f64::NEG_INFINITY);
    assert_eq!(inv_cdf(1.0), f64::INFINITY);
    assert!(inv_cdf(1.5).is_nan());
    assert!((cdf(1.0) - 0.8413447460685429).abs() < 2e-16);
}

// ---------------------------------------------------------------- exact 1-D

/// (a) A cloud against itself shifted by c: the monotone coupling pairs x_i with x_i + c, so
/// W₂² = c². Tolerance 1e-12 relative: the only error is the rounding of (x + c) − x and the sum.
#[test]
fn one_d_shifted_cloud_gives_c_squared() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let x = uniform_cloud(&mut rng, 1000, 1, -3.0, 6.0);
    let w = random_weights(&mut rng, 1000); // deliberately not summing to 1
    for c in [0.37, -2.5, 1e-3] {
        let y: Vec<f64> = x.iter().map(|v| v + c).collect();
        let w2 = w2_squared_1d(&x, &w, &y, &w).unwrap();
        let rel = (w2 - c * c).abs() / (c * c);
        println!("shift {c}: relative error {rel:e}");
        assert!(rel < 1e-9, "shift {c}: W₂² = {w2}, expected {}", c * c);
        assert!(rel < 1e-12);
    }
}

/// (b) A hand-computed case, given unsorted and with unnormalised weights. μ = ¼δ₀ + ¾δ₁,
/// ν = ¼δ_{0.5} + ¼δ₂ + ½δ₃. On (0, ¼]: (0 − 0.5)²; on (¼, ½]: (1 − 2)²; on (½, 1]: (1 − 3)², so
/// W₂² = ¼·0.25 + ¼·1 + ½·4 = 2.3125 (exact in binary; tolerance 1e-12 covers the sum's rounding).
#[test]
fn one_d_hand_computed_pair() {
    let w2 = w2_squared_1d(&[1.0, 0.0], &[3.0, 1.0], &[3.0, 0.5, 2.0], &[2.0, 1.0, 1.0]).unwrap();
    assert!((w2 - 2.3125).abs() < 1e-12, "W₂² = {w2}");
    // Symmetric, and a zero-weight point changes nothing.
    let back = w2_squared_1d(&[3.0, 0.5, 2.0, 9.0], &[2.0, 1.0, 1.0, 0.0], &[1.0, 0.0], &[3.0, 1.0]).unwrap();
    assert!((back - 2.3125).abs() < 1e-12, "W₂² = {back}");
}

/// (c) Cloud against N(m, s²): one point, W₂² = (x − m)² + s²; two points of mass ½,
/// W₂² = Σ ½(x_k − m)² + s² − 2s(x₂ − x₁)φ(0); two points of masses p = Φ(1), 1 − p,
/// W₂² = p(x₁ − m)² + (1 − p)(x₂ − m)² + s² − 2s(x₂ − x₁)φ(1).
/// (From ∫ (x_k − m − sΦ⁻¹)² over each mass interval, with ∫Φ⁻¹ = −φ(Φ⁻¹) and the telescoping
/// Σ_k (φ(z_k) − φ(z_{k+1})) = 0.) Tolerance 1e-12 absolute on values of order 1.
#[test]
fn one_d_gaussian_closed_forms() {
    let (m, s) = (-0.4, 0.7);
    let one = w2_squared_1d_gaussian(&[1.3], &[2.0], m, s).unwrap();
    assert!((one - (1.7f64.powi(2) + s * s)).abs() < 1e-12, "one point: {one}");

    let (x1, x2, m, s) = (-0.2, 1.1, 0.3, 0.8);
    let phi0 = 1.0 / (2.0 * PI).sqrt();
    let expected = 0.5 * (x1 - m) * (x1 - m) + 0.5 * (x2 - m) * (x2 - m) + s * s - 2.0 * s * (x2 - x1) * phi0;
    let two = w2_squared_1d_gaussian(&[x2, x1], &[5.0, 5.0], m, s).unwrap();
    assert!((two - expected).abs() < 1e-12, "two points, p = ½: {two} vs {expected}");

    let p = 0.8413447460685429; // Φ(1) to 16 digits
    let phi1 = (-0.5f64).exp() / (2.0 * PI).sqrt();
    let expected = p * (x1 - m).powi(2) + (1.0 - p) * (x2 - m).powi(2) + s * s - 2.0 * s * (x2 - x1) * phi1;
    let two = w2_squared_1d_gaussian(&[x1, x2], &[p, 1.0 - p], m, s).unwrap();
    assert!((two - expected).abs() < 1e-12, "two points, p = Φ(1): {two} vs {expected}");

    // std = 0 is the distance to the point mass at m.
    let dirac = w2_squared_1d_gaussian(&[x1, x2], &[1.0, 3.0], m, 0.0).unwrap();
    assert!((dirac - (0.25 * (x1 - m).powi(2) + 0.75 * (x2 - m).powi(2))).abs() < 1e-15);
}

/// (c) M equal masses at the conditional means μ_k = M(φ(z_{k−1}) − φ(z_k)), z_k = Φ⁻¹(k/M),
/// of N(m₁, s₁²) (x_k = m₁ + s₁μ_k), against N(m₂, s₂²). Since the cloud's quantile is
/// m₁ + s₁μ(u) with ∫μ = ∫Φ⁻¹ = 0 and ∫μΦ⁻¹ = ∫μ² = Q := (1/M)Σμ_k²,
/// W₂² = (m₁ − m₂)² + s₂² + (s₁² − 2s₁s₂)Q. Tolerance 1e-10 absolute: both sides are sums of
/// M ~ 1e3 terms of order 1 with cancellation only to ~1e-3.
#[test]
fn one_d_conditional_mean_cloud_against_gaussian() {
    for (m1, s1, m2, s2, big_m) in [(0.0, 1.0, 0.0, 1.0, 1000), (0.5, 1.3, -0.2, 0.8, 1000), (2.0, 0.5, 1.0, 2.0, 37)] {
        let z: Vec<f64> = (0..=big_m).map(|k| inv_cdf(k as f64 / big_m as f64)).collect();
        let mu: Vec<f64> = (0..big_m).map(|k| big_m as f64 * (pdf(z[k]) - pdf(z[k + 1]))).collect();
        let q = mu.iter().map(|v| v * v).sum::<f64>() / big_m as f64;
        let x: Vec<f64> = mu.iter().map(|v| m1 + s1 * v).collect();
        let w = vec![1.0; big_m];
        let got = w2_squared_1d_gaussian(&x, &w, m2, s2).unwrap();
        let expected = (m1 - m2) * (m1 - m2) + s2 * s2 + (s1 * s1 - 2.0 * s1 * s2) * q;
        println!("M = {big_m}: W₂² = {got:.15} vs {expected:.15} ({:e})", got - expected);
        assert!((got - expected).abs() < 1e-10, "M = {big_m}: {got} vs {expected}");
    }
}

/// Cloud of N(m₁, s₁²) quantiles at the interval midpoints against N(m₂, s₂²) converges to the
/// two-Gaussian W₂² = (m₁ − m₂)² + (s₁ − s₂)². The gap to it obeys the triangle inequality
/// |W(cloud, G₂) − W(G₁, G₂)| ≤ W(cloud, G₁) (checked to 1e-12), and W(cloud, G₁)² decreases
/// faster than 1/M (the outermost intervals dominate, ~1/(M ln M)): checked below s₁²/M.
#[test]
fn one_d_gaussian_cloud_converges_to_two_gaussian_formula() {
    let (m1, s1, m2, s2) = (0.3, 1.2, -0.5, 0.7);
    let exact = (m1 - m2) * (m1 - m2) + (s1 - s2) * (s1 - s2);
    let mut last_gap = f64::INFINITY;
    for big_m in [10, 100, 1000, 10_000, 100_000] {
        let x: Vec<f64> = (0..big_m).map(|k| m1 + s1 * inv_cdf((k as f64 + 0.5) / big_m as f64)).collect();
        let w = vec![1.0; big_m];
        let to_g2 = w2_squared_1d_gaussian(&x, &w, m2, s2).unwrap();
        let to_g1 = w2_squared_1d_gaussian(&x, &w, m1, s1).unwrap();
        let gap = (to_g2 - exact).abs();
        println!("M = {big_m}: W₂²(cloud, G₂) − formula = {:e}, W₂²(cloud, G₁) = {to_g1:e}", to_g2 - exact);
        assert!((to_g2.sqrt() - exact.sqrt()).abs() <= to_g1.sqrt() + 1e-12);
        assert!(to_g1 < s1 * s1 / big_m as f64);
        assert!(gap < last_gap, "the gap must shrink as the cloud refines");
        last_gap = gap;
    }
    assert!(last_gap < 1e-4);
}

#[test]
fn one_d_rejects_bad_input() {
    assert_invalid(w2_squared_1d(&[0.0, 1.0], &[1.0, -0.5], &[0.0], &[1.0]), "wx[1]");
    assert_invalid(w2_squared_1d(&[0.0, 1.0], &[1.0, 1.0], &[0.0], &[f64::NAN]), "wy[0]");
    assert_invalid(w2_squared_1d(&[0.0, 1.0], &[0.0, 0.0], &[0.0], &[1.0]), "wx");
    assert_invalid(w2_squared_1d(&[0.0, 1.0], &[1.0], &[0.0], &[1.0]), "wx");
    assert_invalid(w2_squared_1d(&[0.0, f64::INFINITY], &[1.0, 1.0], &[0.0], &[1.0]), "x[1]");
    assert_invalid(w2_squared_1d(&[], &[], &[0.0], &[1.0]), "x");
    assert_invalid(w2_squared_1d_gaussian(&[0.0], &[1.0], 0.0, -1.0), "std");
    assert_invalid(w2_squared_1d_gaussian(&[0.0], &[1.0], f64::NAN, 1.0), "mean");
    assert_invalid(w2_squared_1d_gaussian(&[0.0], &[f64::INFINITY], 0.0, 1.0), "wx[0]");
}

// ---------------------------------------------------------------- exact small-N OT

fn plan_marginals(plan: &[(usize, usize, f64)], n: usize, m: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut r, mut c) = (vec![0.0; n], vec![0.0; m]);
    for &(i, j, p) in plan {
        assert!(p > 0.0);
        r[i] += p;
        c[j] += p;
    }
    (r, c)
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// In d = 1 the network simplex must find the monotone coupling's cost. Tolerance 1e-9 absolute
/// (values ~0.1–1): the simplex is optimal to reduced costs ~1e-14 of its potentials and the
/// demand slack is 1e-12 relative. Plan marginals to 1e-12 (rounding of the flow updates).
#[test]
fn exact_ot_agrees_with_one_d_exact() {
    let cost = Cost::euclidean(1).unwrap();
    for (seed, n, m) in [(1, 7, 5), (2, 300, 200), (3, 1000, 1500)] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = uniform_cloud(&mut rng, n, 1, 0.0, 1.0);
        let y: Vec<f64> = (0..m).map(|_| 0.3 + 0.5 * rng.random::<f64>().powi(2)).collect();
        let mut wx = random_weights(&mut rng, n);
        wx[n / 2] = 0.0;
        let wy = random_weights(&mut rng, m);
        let t = std::time::Instant::now();
        let ot = exact_ot(&cost, &x, &wx, &y, &wy, true).unwrap();
        let elapsed = t.elapsed();
        let one_d = w2_squared_1d(&x, &wx, &y, &wy).unwrap();
        println!("{n} × {m}: {} vs {one_d} ({:e}), {} pivots, {elapsed:?}", ot.cost, ot.cost - one_d, ot.pivots);
        assert!((ot.cost - one_d).abs() < 1e-9, "{n} × {m}: {} vs {one_d}", ot.cost);
        let plan = ot.plan.unwrap();
        assert!(plan.len() < n + m);
        assert!(plan.iter().all(|&(i, _, _)| i != n / 2), "a zero-weight point carries no mass");
        let (r, c) = plan_marginals(&plan, n, m);
        assert!(max_diff(&r, &normalised(&wx)) < 1e-12 && max_diff(&c, &normalised(&wy)) < 1e-12);
        let cost_of_plan: f64 = plan.iter().map(|&(i, j, p)| p * (x[i] - y[j]).powi(2)).sum();
        assert!((cost_of_plan - ot.cost).abs() < 1e-12);
    }
}

/// min over permutations σ of (1/N) Σ c(x_i, y_σ(i)).
fn brute_force_assignment(cost: &Cost, x: &[f64], y: &[f64], n: usize) -> f64 {
    let d = cost.dim();
    let c: Vec<f64> = (0..n * n).map(|e| cost.eval(&x[e / n * d..][..d], &y[e % n * d..][..d])).collect();
    let mut perm: Vec<usize> = (0..n).collect();
    let mut best = f64::INFINITY;
    // Heap's algorithm.
    let mut stack = vec![0; n];
    let eval = |p: &[usize]| (0..n).map(|i| c[i * n + p[i]]).sum::<f64>() / n as f64;
    best = best.min(eval(&perm));
    let mut i = 0;
    while i < n {
        if stack[i] < i {
            if i % 2 == 0 {
                perm.swap(0, i)
            } else {
                perm.swap(stack[i], i)
            }
            best = best.min(eval(&perm));
            stack[i] += 1;
            i = 0;
        } else {
            stack[i] = 0;
            i += 1;
        }
    }
    best
}

/// Equal weights, N ≤ 7: the LP optimum is a permutation (Birkhoff), so a brute force over all
/// N! assignments is an independent exact answer. Also on the torus (minimum image). This is the
/// most degenerate case for a network simplex. Tolerance 1e-9 absolute (values ~0.1–1).
#[test]
fn exact_ot_matches_brute_force_assignment() {
    for (seed, n, d, side) in [(4, 7, 3, None), (5, 6, 2, Some(1.0)), (6, 7, 1, None), (7, 5, 4, Some(2.0))] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let cost = match side {
            Some(l) => Cost::torus(d, l).unwrap(),
            None => Cost::euclidean(d).unwrap(),
        };
        let width = side.unwrap_or(1.0);
        let x = uniform_cloud(&mut rng, n, d, 0.0, width);
        let y = uniform_cloud(&mut rng, n, d, 0.0, width);
        let w = vec![1.0; n];
        let ot = exact_ot(&cost, &x, &w, &y, &w, true).unwrap();
        let brute = brute_force_assignment(&cost, &x, &y, n);
        println!("n = {n}, d = {d}, side {side:?}: {} vs {brute} ({:e})", ot.cost, ot.cost - brute);
        assert!((ot.cost - brute).abs() < 1e-9);
    }
}

/// Unequal weights against an independent LP solver (microlp, dense simplex on the n·m
/// variables π_ij ≥ 0 with row and column equalities). Tolerance 1e-9 absolute.
#[test]
fn exact_ot_matches_lp_solver() {
    use microlp::{ComparisonOp, OptimizationDirection, Problem, SolveOutcome};
    for (seed, n, m, d, side) in [(8, 6, 9, 2, None), (9, 10, 8, 3, None), (10, 8, 8, 2, Some(1.0))] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let cost = match side {
            Some(l) => Cost::torus(d, l).unwrap(),
            None => Cost::euclidean(d).unwrap(),
        };
        let x = uniform_cloud(&mut rng, n, d, 0.0, 1.0);
        let y = uniform_cloud(&mut rng, m, d, 0.2, 1.0);
        let (wx, wy) = (random_weights(&mut rng, n), random_weights(&mut rng, m));
        let (a, b) = (normalised(&wx), normalised(&wy));
        let mut lp = Problem::new(OptimizationDirection::Minimize);
        let vars: Vec<_> = (0..n * m)
            .map(|e| lp.add_var(cost.eval(&x[e / m * d..][..d], &y[e % m * d..][..d]), (0.0, f64::INFINITY)))
            .collect();
        for (i, ai) in a.iter().enumerate() {
            lp.add_constraint(
                (0..m).map(|j| (vars[i * m + j], 1.0)).collect::<Vec<_>>().as_slice(),
                ComparisonOp::Eq,
                *ai,
            );
        }
        for (j, bj) in b.iter().enumerate() {
            lp.add_constraint(
                (0..n).map(|i| (vars[i * m + j], 1.0)).collect::<Vec<_>>().as_slice(),
                ComparisonOp::Eq,
                *bj,
            );
        }
        let reference = match lp.solve().unwrap() {
            SolveOutcome::Solution(s) => s.objective(),
            other => panic!("LP not solved: {other:?}"),
        };
        let ot = exact_ot(&cost, &x, &wx, &y, &wy, false).unwrap();
        println!("{n} × {m}, d = {d}, side {side:?}: {} vs LP {reference} ({:e})", ot.cost, ot.cost - reference);
        assert!((ot.cost - reference).abs() < 1e-9);
    }
}

#[test]
fn exact_ot_rejects_bad_input() {
    let c = Cost::euclidean(2).unwrap();
    assert_invalid(exact_ot(&c, &[0.0, 0.0, 1.0], &[1.0], &[0.0, 0.0], &[1.0], false), "x");
    assert_invalid(exact_ot(&c, &[0.0, 0.0], &[1.0], &[0.0, f64::NAN], &[1.0], false), "y[1]");
    assert_invalid(exact_ot(&c, &[0.0, 0.0], &[-1.0], &[0.0, 0.0], &[1.0], false), "wx[0]");
    assert_invalid(Cost::torus(2, 0.0), "side");
    assert_invalid(Cost::euclidean(0), "dim");
}

// ---------------------------------------------------------------- Sinkhorn

/// The inner pass against the naive formula on a tiny input, with a zero-weight (−∞) source.
/// Tolerance 1e-14 absolute on values of order 10.
#[test]
fn sinkhorn_log_sum_matches_naive_sum() {
    let cost = Cost::torus(2, 1.0).unwrap();
    let t = [0.1, 0.2, 0.9, 0.95];
    let s = [0.5, 0.5, 0.05, 0.9, 0.3, 0.1];
    let lc = [0.3, f64::NEG_INFINITY, -1.0];
    let inv_eps = 20.0;
    let got = sinkhorn_log_sum(&cost, &t, &s, &lc, inv_eps);
    for (i, ti) in t.chunks(2).enumerate() {
        let naive: f64 = s.chunks(2).zip(&lc).map(|(sj, l)| (l - cost.eval(ti, sj) * inv_eps).exp()).sum::<f64>().ln();
        assert!((got[i] - naive).abs() < 1e-14, "{} vs {naive}", got[i]);
    }
    // Minimum image: 0.1 and 0.9 are 0.2 apart on the unit circle.
    assert!((cost.eval(&[0.1, 0.0], &[0.9, 0.0]) - 0.04).abs() < 1e-15);
}

/// The returned plan, rebuilt here from (f, g) by direct exponentiation, has row-sum L1 error
/// below the tolerance (as reported) and exact column sums (1e-12: rounding of the update), and
/// its primal value ⟨C, π⟩ + ε KL(π | a ⊗ b) equals the reported dual value up to the duality gap
/// that a marginal error of 1e-8 allows (checked at 1e-8 relative).
#[test]
fn sinkhorn_plan_satisfies_marginals() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let (n, m, d) = (300, 400, 2);
    let cost = Cost::euclidean(d).unwrap();
    let x = uniform_cloud(&mut rng, n, d, 0.0, 1.0);
    let y = uniform_cloud(&mut rng, m, d, 0.5, 0.6);
    let (wx, wy) = (random_weights(&mut rng, n), random_weights(&mut rng, m));
    let (a, b) = (normalised(&wx), normalised(&wy));
    let options = SinkhornOptions { tolerance: 1e-8, ..Default::default() };
    let t = std::time::Instant::now();
    let ot = sinkhorn(&cost, &x, &wx, &y, &wy, &options).unwrap();
    println!(
        "ε = {:e}: {} iterations in {:?}, marginal error {:e}",
        ot.epsilon,
        ot.iterations,
        t.elapsed(),
        ot.marginal_error
    );
    assert!(ot.converged && ot.marginal_error < options.tolerance);
    let (mut rows, mut cols) = (vec![0.0; n], vec![0.0; m]);
    let mut primal = 0.0;
    for i in 0..n {
        for j in 0..m {
            let c = cost.eval(&x[i * d..][..d], &y[j * d..][..d]);
            let p = ot.plan_entry(i, j, a[i], b[j], c);
            rows[i] += p;
            cols[j] += p;
            if p > 0.0 {
                primal += p * c + ot.epsilon * p * (p / (a[i] * b[j])).ln();
            }
        }
    }
    let row_err: f64 = rows.iter().zip(&a).map(|(r, a)| (r - a).abs()).sum();
    println!("row error {row_err:e}, column error {:e}, primal − dual {:e}", max_diff(&cols, &b), primal - ot.value);
    assert!(row_err < options.tolerance);
    assert!((row_err - ot.marginal_error).abs() < 1e-12);
    assert!(max_diff(&cols, &b) < 1e-12);
    assert!((primal - ot.value).abs() < 1e-8 * ot.value);
}

/// S_ε at the default ε (DEFAULT_EPSILON_RATIO × mean cost, ε-scaling by ½ from the squared
/// diameter) within 1e-3 relative of the exact W₂² at N = 500, d = 2: uniform weights on both
/// sides, and random weights against uniform (where the O(ε) bias does not cancel).
#[test]
fn sinkhorn_divergence_is_close_to_exact_w2() {
    let cost = Cost::euclidean(2).unwrap();
    for (seed, weighted) in [(1, false), (2, true)] {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = 500;
        let x = uniform_cloud(&mut rng, n, 2, 0.0, 1.0);
        let y = uniform_cloud(&mut rng, n, 2, 0.3, 0.8);
        let wx = if weighted { random_weights(&mut rng, n) } else { vec![1.0; n] };
        let wy = vec![1.0; n];
        let exact = exact_ot(&cost, &x, &wx, &y, &wy, false).unwrap().cost;
        let t = std::time::Instant::now();
        let s = sinkhorn_divergence(&cost, &x, &wx, &y, &wy, &SinkhornOptions::default()).unwrap();
        let rel = s.value / exact - 1.0;
        println!(
            "weighted {weighted}: S_ε = {:.8}, W₂² = {exact:.8}, relative {rel:.2e}, ε = {:.2e}, iterations {}/{}/{}, {:?}",
            s.value,
            s.epsilon,
            s.xy.iterations,
            s.xx.iterations,
            s.yy.iterations,
            t.elapsed()
        );
        assert!(s.xy.converged && s.xx.converged && s.yy.converged);
        assert!(rel.abs() < 1e-3);
    }
}

/// S_ε(α, α) = 0: the alternating (over-relaxed) and the symmetric solvers reach the same
/// OT_ε(α, α), to the duality gap their tolerance allows (1e-9 absolute on values ~4e-4; measured
/// ~2e-11). Self-transport at ε far below the squared point spacing is the slow case for the
/// alternating solver (its error decays only like 1/k below ~1e-6), so the default tolerance.
#[test]
fn sinkhorn_divergence_of_a_cloud_with_itself_vanishes() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let cost = Cost::torus(3, 1.0).unwrap();
    let x = uniform_cloud(&mut rng, 200, 3, 0.0, 1.0);
    let w = random_weights(&mut rng, 200);
    let options = SinkhornOptions::default();
    let s = sinkhorn_divergence(&cost, &x, &w, &x, &w, &options).unwrap();
    println!(
        "S_ε(α, α) = {:e} (OT_ε = {}, ε = {:e}, iterations {}/{}/{})",
        s.value, s.xy.value, s.epsilon, s.xy.iterations, s.xx.iterations, s.yy.iterations
    );
    assert!(s.xy.converged && s.xx.converged && s.yy.converged);
    assert!(s.value.abs() < 1e-9);
}

#[test]
fn sinkhorn_rejects_bad_options() {
    let c = Cost::euclidean(1).unwrap();
    let ok = SinkhornOptions::default();
    assert_invalid(sinkhorn(&c, &[0.0], &[1.0], &[1.0], &[1.0], &SinkhornOptions { scaling: 1.0, ..ok }), "scaling");
    assert_invalid(
        sinkhorn(&c, &[0.0], &[1.0], &[1.0], &[1.0], &SinkhornOptions { epsilon: Some(0.0), ..ok }),
        "epsilon",
    );
    assert_invalid(
        sinkhorn(&c, &[0.0], &[1.0], &[1.0], &[1.0], &SinkhornOptions { tolerance: -1.0, ..ok }),
        "tolerance",
    );
    assert_invalid(sinkhorn_divergence(&c, &[0.0], &[-1.0], &[1.0], &[1.0], &ok), "wx[0]");
}
