//! The GPU Sinkhorn (the `sinkhorn_log_sum` twin, `SinkhornLogSum` in `sinkhorn_with` and
//! `sinkhorn_divergence_with`) against
//! the f64 CPU solver and the exact W₂², on lavapipe in CI. Tolerances are f32 ones, with the
//! reason for each.

mod common;

use frflow::engine::gpu;
use frflow::transport::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn cloud(rng: &mut ChaCha8Rng, n: usize, d: usize, low: f64, width: f64) -> Vec<f64> {
    (0..n * d).map(|_| low + width * rng.random::<f64>()).collect()
}

/// The pass alone, against its f64 twin on fresh random inputs at awkward sizes: R^d and the
/// torus, d ∈ {1, 2, 3, 5}, 1/ε from 1 to 1e4 (in units of the cloud's squared extent), and
/// coefficients spanning 60 nats with one −∞ (a zero weight). An f32 log-sum is exact to a few
/// ulp of the largest exponent it handles, so the error is measured against
/// scale = 1 + max |ℓ| + max |result|: limit 2e-6 × scale (f32's ulp is 1.2e-7 relative).
#[test]
fn sinkhorn_log_sum_matches_its_cpu_twin() {
    let Some(ctx) = common::context() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut worst: f64 = 0.0;
    for (nt, ns, d, torus) in
        [(1, 1, 1, false), (7, 130, 2, true), (129, 33, 3, false), (1000, 777, 5, true), (513, 1000, 1, false)]
    {
        let cost = if torus { Cost::torus(d, 2.0).unwrap() } else { Cost::euclidean(d).unwrap() };
        let t = cloud(&mut rng, nt, d, -1.0, 2.0);
        let s = cloud(&mut rng, ns, d, -0.5, 2.0);
        let mut lc: Vec<f64> = (0..ns).map(|_| 60.0 * rng.random::<f64>() - 30.0).collect();
        if ns > 1 {
            lc[ns / 2] = f64::NEG_INFINITY;
        }
        for inv_eps in [1.0, 37.0, 1e4] {
            let want = sinkhorn_log_sum(&cost, &t, &s, &lc, inv_eps);
            let got = gpu::sinkhorn_log_sum(&ctx, &cost, &t, &s, &lc, inv_eps).unwrap();
            let max_lc = lc.iter().filter(|l| l.is_finite()).fold(0.0f64, |m, l| m.max(l.abs()));
            for (g, w) in got.iter().zip(&want) {
                let scale = 1.0 + max_lc + w.abs();
                let err = (g - w).abs() / scale;
                worst = worst.max(err);
                assert!(err < 2e-6, "nt={nt} ns={ns} d={d} torus={torus} 1/ε={inv_eps}: {g} vs {w}");
            }
        }
    }
    println!("worst error / scale: {worst:.2e}");
}

/// S_ε on the GPU against the f64 solver at the same ε and tolerance (GPU_TOLERANCE), and against the exact W₂²
/// (network simplex), at N = 300 against 311 in d = 2 with random weights. The dual value is
/// stationary in the potentials, so f32 passes move it by far less than their own error:
/// measured 1e-7 relative to the CPU value, held to 1e-5. Against the exact W₂² the entropic bias
/// of the default ε remains (−6.7e-4 measured, both engines), held to 1e-3 as in
/// tests/transport.rs.
#[test]
fn sinkhorn_divergence_gpu_matches_cpu_and_exact() {
    let Some(ctx) = common::context() else { return };
    let cost = Cost::euclidean(2).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let n = 300;
    let x = cloud(&mut rng, n, 2, 0.0, 1.0);
    let y = cloud(&mut rng, n + 11, 2, 0.3, 0.8);
    let wx: Vec<f64> = (0..n).map(|_| 0.1 + rng.random::<f64>()).collect();
    let wy = vec![1.0; n + 11];
    let exact = exact_ot(&cost, &x, &wx, &y, &wy, false).unwrap().cost;
    let options = SinkhornOptions { tolerance: GPU_TOLERANCE, ..Default::default() };
    let cpu = sinkhorn_divergence(&cost, &x, &wx, &y, &wy, &options).unwrap();
    let t = std::time::Instant::now();
    let gpu = sinkhorn_divergence_with(&mut gpu::SinkhornLogSum::new(&ctx, &cost).unwrap(), &x, &wx, &y, &wy, &options)
        .unwrap();
    println!(
        "S_ε: gpu {:.9} ({}/{}/{} iterations, {:?}), cpu {:.9} ({} iterations), exact W₂² {exact:.9}",
        gpu.value,
        gpu.xy.iterations,
        gpu.xx.iterations,
        gpu.yy.iterations,
        t.elapsed(),
        cpu.value,
        cpu.xy.iterations
    );
    assert!(gpu.xy.converged && gpu.xx.converged && gpu.yy.converged);
    assert_eq!(gpu.epsilon, cpu.epsilon);
    assert!((gpu.value / cpu.value - 1.0).abs() < 1e-5, "gpu/cpu − 1 = {:e}", gpu.value / cpu.value - 1.0);
    assert!((gpu.value / exact - 1.0).abs() < 1e-3, "gpu/exact − 1 = {:e}", gpu.value / exact - 1.0);
}

/// The GPU plan, rebuilt here in f64 from the returned potentials on the torus, has the
/// marginals the solver reported: row and column L1 errors within 2× the tolerance of 1e-4. The
/// solver measures the row error from f32 passes, whose noise puts a floor of about 1e-5 under
/// it (measured: 2e-5 at tolerance 1e-5, after 1840 iterations); the last g update makes the
/// columns exact only up to the same rounding.
#[test]
fn sinkhorn_gpu_plan_has_the_reported_marginals() {
    let Some(ctx) = common::context() else { return };
    let cost = Cost::torus(2, 1.0).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let (n, m) = (200, 257);
    let x = cloud(&mut rng, n, 2, 0.0, 1.0);
    let y = cloud(&mut rng, m, 2, 0.0, 1.0);
    let wx: Vec<f64> = (0..n).map(|_| 0.1 + rng.random::<f64>()).collect();
    let wy: Vec<f64> = (0..m).map(|_| 0.1 + rng.random::<f64>()).collect();
    let (sa, sb): (f64, f64) = (wx.iter().sum(), wy.iter().sum());
    let (a, b): (Vec<f64>, Vec<f64>) = (wx.iter().map(|w| w / sa).collect(), wy.iter().map(|w| w / sb).collect());
    let options = SinkhornOptions { tolerance: GPU_TOLERANCE, ..Default::default() };
    let ot = sinkhorn_with(&mut gpu::SinkhornLogSum::new(&ctx, &cost).unwrap(), &x, &wx, &y, &wy, &options).unwrap();
    let (mut rows, mut cols) = (vec![0.0; n], vec![0.0; m]);
    for i in 0..n {
        for j in 0..m {
            let p = ot.plan_entry(i, j, a[i], b[j], cost.eval(&x[2 * i..2 * i + 2], &y[2 * j..2 * j + 2]));
            rows[i] += p;
            cols[j] += p;
        }
    }
    let row_err: f64 = rows.iter().zip(&a).map(|(r, a)| (r - a).abs()).sum();
    let col_err: f64 = cols.iter().zip(&b).map(|(c, b)| (c - b).abs()).sum();
    println!(
        "{} iterations: reported row error {:.2e}, f64 row error {row_err:.2e}, column error {col_err:.2e}",
        ot.iterations, ot.marginal_error
    );
    assert!(ot.converged && ot.marginal_error < options.tolerance);
    assert!(row_err < 2.0 * options.tolerance && col_err < 2.0 * options.tolerance);
}

/// Coefficients beyond what an f32 pass can sum meaningfully are an error naming the field, not
/// a silently wrong distance.
#[test]
fn sinkhorn_pass_rejects_coefficients_f32_cannot_hold() {
    let Some(ctx) = common::context() else { return };
    let cost = Cost::euclidean(1).unwrap();
    let err = gpu::sinkhorn_log_sum(&ctx, &cost, &[0.0], &[0.0, 1.0], &[0.0, 3e7], 1.0).unwrap_err();
    assert!(matches!(&err, frflow::Error::Invalid { field, .. } if field == "log_coeffs"), "{err}");
    assert!(err.to_string().contains("3e7"), "{err}");
}

/// S_ε(α, α) = 0 on the GPU too: the alternating and the symmetric solvers, both on f32 passes,
/// reach the same OT_ε(α, α) up to what their tolerance and f32 allow: measured 8e-7 of
/// OT_ε(α, α) (~4e-4 here, torus, d = 3, random weights), held to 1e-5.
#[test]
fn sinkhorn_divergence_gpu_of_a_cloud_with_itself_vanishes() {
    let Some(ctx) = common::context() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(24);
    let cost = Cost::torus(3, 1.0).unwrap();
    let x = cloud(&mut rng, 200, 3, 0.0, 1.0);
    let w: Vec<f64> = (0..200).map(|_| 0.1 + rng.random::<f64>()).collect();
    let options = SinkhornOptions { tolerance: GPU_TOLERANCE, ..Default::default() };
    let s = sinkhorn_divergence_with(&mut gpu::SinkhornLogSum::new(&ctx, &cost).unwrap(), &x, &w, &x, &w, &options)
        .unwrap();
    println!(
        "S_ε(α, α) = {:e}, OT_ε(α, α) = {:e}, iterations {}/{}/{}",
        s.value, s.xy.value, s.xy.iterations, s.xx.iterations, s.yy.iterations
    );
    assert!(s.xy.converged && s.xx.converged && s.yy.converged);
    assert!(s.value.abs() < 1e-5 * s.xy.value.abs(), "{} against {}", s.value, s.xy.value);
}
