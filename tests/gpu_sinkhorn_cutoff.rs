//! Sinkhorn's cutoff passes on the GPU (`gpu::sinkhorn_log_sum_cells`, `SinkhornLogSum` with
//! `SinkhornOptions::cutoff`) against their f64 CPU twins, on lavapipe in CI. Tolerances are f32
//! ones, with the reason for each.

mod common;

use frflow::engine::cells::{CellGrid, Cutoff};
use frflow::engine::gpu;
use frflow::transport::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn cloud(rng: &mut ChaCha8Rng, n: usize, d: usize) -> Vec<f64> {
    (0..n * d).map(|_| rng.random::<f64>()).collect()
}

/// The first m points of `x`, each moved by up to ±0.005 per coordinate (as in
/// tests/sinkhorn_cutoff.rs: a plan of short moves, which the cutoff suits).
fn nearby(rng: &mut ChaCha8Rng, x: &[f64], m: usize, d: usize) -> Vec<f64> {
    x[..m * d].iter().map(|v| v + 0.01 * (rng.random::<f64>() - 0.5)).collect()
}

/// The cutoff pass alone against its f64 twin on the solver's kind of grid (shared by both
/// clouds), torus and R^d, d = 1, 2, 3, awkward sizes, coefficients spanning 40 nats: values
/// within 2e-6 × (1 + max |ℓ| + |value|), as for the all-pairs pass in tests/gpu_transport.rs;
/// the largest bound within 1e-3 relative of the CPU's largest (f32 sums and exponentials).
#[test]
fn sinkhorn_log_sum_cells_matches_its_cpu_twin() {
    let Some(ctx) = common::context() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    for (nt, ns, d, torus, inv_eps) in [
        (333, 517, 1, true, 3000.0),
        (701, 299, 2, false, 1000.0),
        (250, 261, 3, true, 1000.0),
        (129, 400, 2, true, 2e3),
    ] {
        let cost = if torus { Cost::torus(d, 1.0).unwrap() } else { Cost::euclidean(d).unwrap() };
        let t = cloud(&mut rng, nt, d);
        let s = cloud(&mut rng, ns, d);
        let lc: Vec<f64> = (0..ns).map(|_| 40.0 * rng.random::<f64>() - 20.0).collect();
        let tolerance = 1e-10;
        let radius = Cutoff::radius(&gibbs_kernel(inv_eps), tolerance);
        let grids = CellGrid::shared(&cost.space(), &[&t, &s], radius).expect("cells save work here");
        let (want, bounds) = sinkhorn_log_sum_cells(&cost, &grids[1], tolerance, &t, &s, &lc, inv_eps);
        let (got, bound) =
            gpu::sinkhorn_log_sum_cells(&ctx, &cost, &grids[1], tolerance, &t, &s, &lc, inv_eps).unwrap();
        for (g, w) in got.iter().zip(&want) {
            let err = (g - w).abs() / (1.0 + 20.0 + w.abs());
            assert!(err < 2e-6, "nt={nt} ns={ns} d={d} torus={torus}: {g} vs {w}");
        }
        let largest = bounds.iter().copied().fold(0.0, f64::max);
        println!("d={d} torus={torus}: largest bound cpu {largest:.4e}, gpu {bound:.4e}");
        assert!((bound / largest - 1.0).abs() < 1e-3, "bound {bound:e} vs {largest:e}");
    }
}

/// S_ε with cutoff passes on the GPU against the f64 solver with the same cutoff and against
/// the f64 all-pairs one, N = 1031 against 997 in d = 2 on the torus and R^d, random weights,
/// ε = 5e-4 (cutoff radius 0.11 at auto's δ = 1e-10). GPU (stopping at `GPU_TOLERANCE`) vs CPU
/// with cells (at 1e-9): within 1e-5 relative, as the all-pairs GPU solver in
/// tests/gpu_transport.rs (its dual value is stationary, so f32 passes move it far less than
/// their own error). CPU cells vs all pairs, both at 1e-9: within `truncation_error` plus 1e-9
/// relative for convergence (tests/sinkhorn_cutoff.rs says why). The GPU's B is measured from f32 passes
/// (the cells' own bound is too loose here, as on the CPU), so it holds their rounding: ~1e-7
/// measured, against 1e-11 … 1e-8 in f64.
#[test]
fn gpu_cutoff_sinkhorn_divergence_matches_cpu() {
    let Some(ctx) = common::context() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    for torus in [true, false] {
        let d = 2;
        let cost = if torus { Cost::torus(d, 1.0).unwrap() } else { Cost::euclidean(d).unwrap() };
        let (n, m) = (1031, 997);
        let x = cloud(&mut rng, n, d);
        let y = nearby(&mut rng, &x, m, d);
        let wx: Vec<f64> = (0..n).map(|_| 0.5 + rng.random::<f64>()).collect();
        let wy: Vec<f64> = (0..m).map(|_| 0.5 + rng.random::<f64>()).collect();
        let cutoff = Cutoff::Tolerance { tolerance: 1e-10, max_error: 1e-2 };
        let options = SinkhornOptions { tolerance: GPU_TOLERANCE, epsilon: Some(5e-4), cutoff, ..Default::default() };
        // The f64 solves converge further (1e-9), so that only the cutoff and f32 separate them.
        let f64_options = SinkhornOptions { tolerance: 1e-9, ..options };
        let all_pairs = SinkhornOptions { cutoff: Cutoff::None, ..f64_options };
        let all = sinkhorn_divergence(&cost, &x, &wx, &y, &wy, &all_pairs).unwrap();
        let cpu = sinkhorn_divergence(&cost, &x, &wx, &y, &wy, &f64_options).unwrap();
        let t = std::time::Instant::now();
        let mut pass = gpu::SinkhornLogSum::new(&ctx, &cost).unwrap();
        let gpu = sinkhorn_divergence_with(&mut pass, &x, &wx, &y, &wy, &options).unwrap();
        println!(
            "torus={torus}: S_ε gpu {:.9e} ({:?}, B {:.2e}/{:.2e}/{:.2e}), cpu cells {:.9e} (B {:.2e}), all pairs {:.9e}",
            gpu.value,
            t.elapsed(),
            gpu.xy.truncation_bound,
            gpu.xx.truncation_bound,
            gpu.yy.truncation_bound,
            cpu.value,
            cpu.xy.truncation_bound,
            all.value
        );
        for ot in [&gpu.xy, &gpu.xx, &gpu.yy, &cpu.xy] {
            assert!(ot.converged && ot.fell_back.is_none() && ot.truncation_bound > 0.0);
        }
        assert!((gpu.value / cpu.value - 1.0).abs() < 1e-5, "gpu/cpu − 1 = {:e}", gpu.value / cpu.value - 1.0);
        let slack = 1e-9 * all.value.abs();
        assert!(
            (cpu.value - all.value).abs() <= cpu.truncation_error() + slack,
            "cells {} vs all {}",
            cpu.value,
            all.value
        );
    }
}

/// Separated clouds (3 apart, cutoff radius 0.15): an explicit tolerance is the `cutoff` error on
/// the GPU too, and `Auto` at a size where it uses cells would fall back (checked on the CPU in
/// tests/sinkhorn_cutoff.rs).
#[test]
fn gpu_cutoff_sinkhorn_with_no_mass_near_is_the_cutoff_error() {
    let Some(ctx) = common::context() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(43);
    let cost = Cost::euclidean(2).unwrap();
    let x = cloud(&mut rng, 200, 2);
    let far: Vec<f64> = cloud(&mut rng, 190, 2).into_iter().map(|v| v + 4.0).collect();
    let w = vec![1.0; 200];
    let cutoff = Cutoff::Tolerance { tolerance: 1e-10, max_error: 1e-4 };
    let options = SinkhornOptions { tolerance: GPU_TOLERANCE, epsilon: Some(1e-3), cutoff, ..Default::default() };
    let mut pass = gpu::SinkhornLogSum::new(&ctx, &cost).unwrap();
    match sinkhorn_with(&mut pass, &x, &w, &far, &w[..190], &options) {
        Err(frflow::Error::Invalid { field, value, .. }) => {
            assert_eq!(field, "cutoff");
            assert!(value.contains("inf"), "{value}");
        }
        other => panic!("expected the cutoff error, got {other:?}"),
    }
}
