//! Sinkhorn with cutoff passes (cell sums of the Gibbs kernel, `SinkhornOptions::cutoff`) against
//! the all-pairs solver, in f64 on the CPU.
//!
//! Why the tolerances: both half-steps keep the same pairs (the grids share one geometry), so the
//! cutoff solver solves the entropic problem of the truncated cost c̃ ≥ c exactly. Hence
//! OT_ε(c) ≤ OT_ε(c̃), and weak duality at the returned potentials gives
//! OT_ε(c) ≥ value − ε·B, B the returned plan's `truncation_bound` (the cells' bound, or where
//! that is too loose the truncation measured by one all-pairs pass). So, up to the two solvers'
//! convergence (`SLACK`), all-pairs − cutoff lies in [−ε·B, 0]: the tests hold it there,
//! one-sided, at auto's δ = 1e-10 and at a coarser δ (1e-9 … 1e-6), where the truncation is
//! visible (measured: all-pairs − cutoff = −(0.74 … 1.00)·ε·B).

use frflow::Error;
use frflow::engine::cells::{CellGrid, Cutoff};
use frflow::transport::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn cloud(rng: &mut ChaCha8Rng, n: usize, d: usize, low: f64, width: f64) -> Vec<f64> {
    (0..n * d).map(|_| low + width * rng.random::<f64>()).collect()
}

fn weights(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| 0.5 + rng.random::<f64>()).collect()
}

/// The first m of the n points of `x`, each moved by up to ±0.005 per coordinate: a second cloud
/// that the optimal plan reaches by short moves (filling the holes of the n − m points left out
/// and evening out the weights). The cutoff suits such problems: the dropped pairs matter only
/// where the plan moves mass farther than about the cutoff radius.
fn nearby(rng: &mut ChaCha8Rng, x: &[f64], m: usize, d: usize) -> Vec<f64> {
    x[..m * d].iter().map(|v| v + 0.01 * (rng.random::<f64>() - 0.5)).collect()
}

/// Convergence slack on a value, relative to ε: at a marginal error below 1e-9 the dual value
/// of either solver is within ~1e-9·ε of its optimum (measured: all-pairs at tolerances 1e-9 and
/// 1e-11 differ by < 1e-10·ε).
const SLACK: f64 = 1e-8;

fn options(eps: f64, cutoff: Cutoff) -> SinkhornOptions {
    SinkhornOptions { epsilon: Some(eps), tolerance: 1e-9, max_iterations: 50_000, cutoff, ..Default::default() }
}

/// Awkward sizes on the torus and R^d, d = 1, 2, 3, small ε (in units of the cloud's squared
/// extent, 1): OT_ε with cells at δ = 1e-10 and 1e-2 against all pairs, within the bound.
#[test]
fn cutoff_sinkhorn_matches_all_pairs_within_its_bound() {
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    for (d, torus, n, m, eps, coarse) in [
        (1, true, 601, 577, 1e-4, 1e-7),
        (1, false, 611, 523, 2e-4, 1e-7),
        (2, true, 433, 389, 5e-4, 1e-7),
        (2, false, 457, 401, 1e-3, 1e-7),
        (3, true, 301, 293, 2e-3, 1e-7),
        (3, false, 317, 311, 2e-3, 1e-9),
    ] {
        let cost = if torus { Cost::torus(d, 1.0).unwrap() } else { Cost::euclidean(d).unwrap() };
        let x = cloud(&mut rng, n, d, 0.0, 1.0);
        let y = nearby(&mut rng, &x, m, d);
        let (wx, wy) = (weights(&mut rng, n), weights(&mut rng, m));
        let all = sinkhorn(&cost, &x, &wx, &y, &wy, &options(eps, Cutoff::None)).unwrap();
        assert!(all.converged && all.truncation_bound == 0.0 && all.fell_back.is_none());
        for tolerance in [1e-10, coarse] {
            let cutoff = Cutoff::Tolerance { tolerance, max_error: 10.0 };
            let cut = sinkhorn(&cost, &x, &wx, &y, &wy, &options(eps, cutoff)).unwrap();
            let case = format!("d={d} torus={torus} n={n} m={m} ε={eps} δ={tolerance}");
            assert!(cut.converged, "{case}: not converged");
            assert!(cut.fell_back.is_none(), "{case}");
            // The grid is used (it saves work at these ε) and the bound is positive.
            assert!(cut.truncation_bound > 0.0, "{case}: no cells");
            let diff = all.value - cut.value;
            let room = eps * cut.truncation_bound;
            println!(
                "{case}: B {:.2e} (measured: {}), all − cut = {diff:.3e}, ε·B = {room:.3e}",
                cut.truncation_bound, cut.truncation_measured
            );
            assert!(diff <= SLACK * eps, "{case}: all-pairs value above the cutoff's by {diff:e}");
            assert!(diff >= -room - SLACK * eps, "{case}: all − cut = {diff:e} beyond −ε·B = {:e}", -room);
        }
    }
}

/// The divergence with cells against all pairs within `Divergence::truncation_error`, on R^2 at
/// a coarse δ (where the error is visible) and on the torus at auto's δ.
#[test]
fn cutoff_sinkhorn_divergence_within_its_truncation_error() {
    let mut rng = ChaCha8Rng::seed_from_u64(32);
    for (d, torus, n, m, tolerance) in [(2, false, 311, 283, 1e-6), (2, true, 331, 297, 1e-10)] {
        let cost = if torus { Cost::torus(d, 1.0).unwrap() } else { Cost::euclidean(d).unwrap() };
        let x = cloud(&mut rng, n, d, 0.0, 1.0);
        let y = nearby(&mut rng, &x, m, d);
        let (wx, wy) = (weights(&mut rng, n), vec![1.0; m]);
        let eps = 5e-4;
        let all = sinkhorn_divergence(&cost, &x, &wx, &y, &wy, &options(eps, Cutoff::None)).unwrap();
        let cutoff = Cutoff::Tolerance { tolerance, max_error: 10.0 };
        let cut = sinkhorn_divergence(&cost, &x, &wx, &y, &wy, &options(eps, cutoff)).unwrap();
        let bound = cut.truncation_error();
        let diff = (all.value - cut.value).abs();
        println!("d={d} torus={torus} δ={tolerance}: S = {:.6e}, |Δ| = {diff:.3e}, bound {bound:.3e}", all.value);
        assert!(bound > 0.0 && all.truncation_error() == 0.0);
        assert!(diff <= bound + 2.0 * SLACK * eps, "|ΔS| = {diff:e} above the truncation error {bound:e}");
    }
}

/// Two clouds 3 apart in R^2 at ε = 1e-3 (cutoff radius 0.15): no point has the other cloud in
/// its neighbourhood, so the first cell pass is given up. An explicit tolerance errors naming
/// `cutoff`; so does a coarse δ whose final bound exceeds a tiny max_error.
#[test]
fn exceeded_bound_with_a_tolerance_is_the_cutoff_error() {
    let mut rng = ChaCha8Rng::seed_from_u64(33);
    let cost = Cost::euclidean(2).unwrap();
    let x = cloud(&mut rng, 200, 2, 0.0, 1.0);
    let far = cloud(&mut rng, 190, 2, 4.0, 1.0);
    let w = vec![1.0; 200];
    let cutoff = Cutoff::Tolerance { tolerance: 1e-10, max_error: 1e-4 };
    match sinkhorn(&cost, &x, &w, &far, &w[..190], &options(1e-3, cutoff)) {
        Err(Error::Invalid { field, value, .. }) => {
            assert_eq!(field, "cutoff");
            assert!(value.contains("inf"), "{value}");
        }
        other => panic!("expected the cutoff error, got {other:?}"),
    }
    let near = cloud(&mut rng, 190, 2, 0.2, 0.8);
    let cutoff = Cutoff::Tolerance { tolerance: 1e-2, max_error: 1e-12 };
    match sinkhorn_divergence(&cost, &x, &w, &near, &w[..190], &options(1e-3, cutoff)) {
        Err(Error::Invalid { field, .. }) => assert_eq!(field, "cutoff"),
        other => panic!("expected the cutoff error, got {other:?}"),
    }
}

/// `Auto` (with its threshold at 0 pairs, so that it uses cells at a test's size) where the
/// cells fail falls back to all pairs and says so (the separated clouds: the
/// same numbers as `Cutoff::None`, `fell_back` = ∞); where they hold it keeps them (a bound, no
/// fallback, the value within ε·B). At the default threshold a few hundred points sum all pairs.
#[test]
fn auto_cutoff_falls_back_to_all_pairs_and_says_so() {
    let mut rng = ChaCha8Rng::seed_from_u64(34);
    let cost = Cost::euclidean(2).unwrap();
    let x = cloud(&mut rng, 150, 2, 0.0, 1.0);
    let far = cloud(&mut rng, 140, 2, 4.0, 1.0);
    let (wx, wy) = (weights(&mut rng, 150), weights(&mut rng, 140));
    let auto_at_any_size = |y: &[f64]| {
        let mut pass = CpuLogSum::new(&cost).with_auto_cells_above(0);
        sinkhorn_with(&mut pass, &x, &wx, y, &wy, &options(1e-3, Cutoff::Auto))
    };
    let all = sinkhorn(&cost, &x, &wx, &far, &wy, &options(1e-3, Cutoff::None)).unwrap();
    let auto = auto_at_any_size(&far).unwrap();
    assert_eq!(auto.fell_back, Some(f64::INFINITY));
    assert_eq!(auto.truncation_bound, 0.0);
    assert_eq!(auto.value, all.value);
    assert_eq!(auto.iterations, all.iterations);

    let near = nearby(&mut rng, &x, 140, 2);
    let all = sinkhorn(&cost, &x, &wx, &near, &wy, &options(1e-3, Cutoff::None)).unwrap();
    let default = sinkhorn(&cost, &x, &wx, &near, &wy, &options(1e-3, Cutoff::Auto)).unwrap();
    assert_eq!(default.value, all.value, "auto at 150 × 140 points sums all pairs");
    assert_eq!(default.truncation_bound, 0.0);
    let auto = auto_at_any_size(&near).unwrap();
    println!(
        "auto: B {:.2e} measured {} fell back {:?}",
        auto.truncation_bound, auto.truncation_measured, auto.fell_back
    );
    assert!(auto.fell_back.is_none() && auto.truncation_bound > 0.0);
    assert!(auto.truncation_bound <= Cutoff::DEFAULT_MAX_ERROR);
    let diff = all.value - auto.value;
    assert!(diff <= SLACK * 1e-3 && diff >= -1e-3 * auto.truncation_bound - SLACK * 1e-3, "{diff:e}");
}

/// The pass alone: with δ = 1e-10 the cell sum equals the all-pairs one within its bound for
/// every target (log-sums within log(1 + bound), plus rounding).
#[test]
fn sinkhorn_log_sum_cells_within_bound_of_all_pairs() {
    let mut rng = ChaCha8Rng::seed_from_u64(35);
    for (d, torus, n, m) in [(1, true, 333, 517), (2, false, 701, 299), (3, true, 250, 260)] {
        let cost = if torus { Cost::torus(d, 1.0).unwrap() } else { Cost::euclidean(d).unwrap() };
        let t = cloud(&mut rng, n, d, 0.0, 1.0);
        let s = cloud(&mut rng, m, d, 0.0, 1.0);
        let lc: Vec<f64> = (0..m).map(|_| 40.0 * rng.random::<f64>() - 20.0).collect();
        let inv_eps = 3000.0;
        for tolerance in [1e-10, 1e-3] {
            let radius = Cutoff::radius(&gibbs_kernel(inv_eps), tolerance);
            let grids = CellGrid::shared(&cost.space(), &[&t, &s], radius).expect("cells save work here");
            let (cut, bounds) = sinkhorn_log_sum_cells(&cost, &grids[1], tolerance, &t, &s, &lc, inv_eps);
            let all = sinkhorn_log_sum(&cost, &t, &s, &lc, inv_eps);
            for ((c, a), b) in cut.iter().zip(&all).zip(&bounds) {
                assert!(*c <= a + 1e-12 && *c >= a - b.ln_1p() - 1e-12, "d={d}: {c} vs {a}, bound {b}");
            }
        }
    }
}
