//! Times W₂ (the debiased Sinkhorn divergence) between two weighted clouds with the cutoff
//! passes, and the all-pairs pass it replaces, on the CPU engine (f64) or a GPU (f32).
//!
//! ```bash
//! cargo run --release --example sinkhorn_cutoff -- cpu 16384 2e-4
//! cargo run --release --example sinkhorn_cutoff -- llvmpipe 16384 2e-4
//! ```
//!
//! Arguments: `cpu` or a GPU adapter selector, N, ε (absolute; the unit torus, d = 2), and
//! optionally `all` to also run the all-pairs solve to the end (hours at N = 16384 on two cores).
//! The clouds: N uniform points with weights in [0.5, 1.5], and a second, independent sample
//! of N points with weights in [0.5, 1.5]. Without `all`, the all-pairs time is estimated as the
//! number of passes the cutoff solve took times the median time of one all-pairs pass.

use frflow::engine::cells::{CellGrid, Cutoff};
use frflow::engine::gpu::{GpuContext, SinkhornLogSum};
use frflow::transport::*;
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// Counts the passes.
struct Counted<'a> {
    inner: &'a mut dyn LogSum,
    cells: usize,
    all: usize,
    /// Pairs evaluated by the last cell pass.
    pairs: u64,
}

impl LogSum for Counted<'_> {
    fn cost(&self) -> &Cost {
        self.inner.cost()
    }
    fn log_sum(&mut self, t: &[f64], s: &[f64], lc: &[f64], inv_eps: f64) -> frflow::Result<Vec<f64>> {
        self.all += 1;
        self.inner.log_sum(t, s, lc, inv_eps)
    }
    fn log_sum_cells(
        &mut self,
        grid: &CellGrid,
        tolerance: f64,
        t: &[f64],
        s: &[f64],
        lc: &[f64],
        inv_eps: f64,
    ) -> frflow::Result<(Vec<f64>, f64)> {
        self.cells += 1;
        // The pairs of the last pass: one at the target ε.
        self.pairs = grid.pairs(t);
        self.inner.log_sum_cells(grid, tolerance, t, s, lc, inv_eps)
    }
    fn auto_cells_above(&self) -> usize {
        self.inner.auto_cells_above()
    }
}

fn main() -> frflow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let device = args.first().map_or("cpu", String::as_str);
    let n: usize = args.get(1).map_or(16384, |a| a.parse().expect("N"));
    let eps: f64 = args.get(2).map_or(2e-4, |a| a.parse().expect("ε"));
    let full = args.get(3).is_some_and(|a| a == "all");
    let d = 2;
    let cost = Cost::torus(d, 1.0)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let x: Vec<f64> = (0..n * d).map(|_| rng.random::<f64>()).collect();
    let y: Vec<f64> = (0..n * d).map(|_| rng.random::<f64>()).collect();
    let wx: Vec<f64> = (0..n).map(|_| 0.5 + rng.random::<f64>()).collect();
    let wy: Vec<f64> = (0..n).map(|_| 0.5 + rng.random::<f64>()).collect();
    let ctx = if device == "cpu" { None } else { Some(GpuContext::new(Some(device))?) };
    let tolerance = if ctx.is_some() { GPU_TOLERANCE } else { 1e-6 };
    let options = |cutoff| SinkhornOptions { epsilon: Some(eps), tolerance, cutoff, ..Default::default() };
    let mut pass: Box<dyn LogSum> = match &ctx {
        Some(ctx) => Box::new(SinkhornLogSum::new(ctx, &cost)?),
        None => Box::new(CpuLogSum::new(&cost)),
    };
    println!("N = {n}, d = {d}, unit torus, ε = {eps:e}, on {device}");

    let cutoff = Cutoff::Tolerance { tolerance: Cutoff::DEFAULT_TOLERANCE, max_error: Cutoff::DEFAULT_MAX_ERROR };
    let mut counted = Counted { inner: pass.as_mut(), cells: 0, all: 0, pairs: 0 };
    let start = Instant::now();
    let cut = sinkhorn_divergence_with(&mut counted, &x, &wx, &y, &wy, &options(cutoff))?;
    let t_cut = start.elapsed().as_secs_f64();
    let (cells, all, pairs) = (counted.cells, counted.all, counted.pairs);
    println!(
        "cells (δ = 1e-10): S_ε = {:.9e} in {t_cut:.1} s: {cells} cell passes (~{pairs} pairs each, {:.1} per target), \
         {all} all-pairs passes (annealing ε where cells do not save work, and {} measuring passes); \
         iterations {}/{}/{}; B {:.2e}/{:.2e}/{:.2e} (measured: {}), |ΔS| ≤ {:.2e}",
        cut.value,
        pairs as f64 / n as f64,
        [&cut.xy, &cut.xx, &cut.yy].iter().filter(|o| o.truncation_measured).count(),
        cut.xy.iterations,
        cut.xx.iterations,
        cut.yy.iterations,
        cut.xy.truncation_bound,
        cut.xx.truncation_bound,
        cut.yy.truncation_bound,
        cut.xy.truncation_measured,
        cut.truncation_error()
    );

    // One all-pairs pass at ε, timed twice (the median of two).
    let lc = vec![-(n as f64).ln(); n];
    let mut times = vec![];
    for _ in 0..2 {
        let t = Instant::now();
        std::hint::black_box(pass.log_sum(&x, &y, &lc, 1.0 / eps)?);
        times.push(t.elapsed().as_secs_f64());
    }
    let t_pass = times.iter().copied().fold(f64::INFINITY, f64::min);
    let passes = cells + all;
    println!(
        "all pairs: one pass {t_pass:.3} s ({:.2e} pairs/s); the cutoff solve's {passes} passes would take ~{:.0} s \
         ({:.0}× the cutoff solve)",
        (n * n) as f64 / t_pass,
        passes as f64 * t_pass,
        passes as f64 * t_pass / t_cut
    );
    if full {
        let start = Instant::now();
        let all = sinkhorn_divergence_with(pass.as_mut(), &x, &wx, &y, &wy, &options(Cutoff::None))?;
        let t_all = start.elapsed().as_secs_f64();
        println!(
            "all pairs: S_ε = {:.9e} in {t_all:.1} s ({:.1}× the cutoff solve); |ΔS| = {:.2e}",
            all.value,
            t_all / t_cut,
            (all.value - cut.value).abs()
        );
    }
    Ok(())
}
