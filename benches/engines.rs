//! Criterion benchmarks of the engines at small N (large N belongs to `frflow bench` on a GPU).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use frflow::engine::Engine;
use frflow::engine::cpu::{CpuEngine, log_kernel_sum};
use frflow::model::{Divergence, Domain, Gaussian, ModelSpec, QuadratureSpec, Reference, Space, Variant};
use frflow::particles::{Initial, Particles};
use frflow::stepper::{Scheme, StepSize, Stepper};

fn problem(n: usize, d: usize, variant: Variant) -> CpuEngine {
    let space = Space::new(d, Domain::Torus { side: 1.0 }).unwrap();
    let model = ModelSpec {
        space,
        reference: Reference::Uniform,
        divergence: Divergence::Kl,
        sigma: 1.0,
        epsilon: 0.1,
        variant,
        energy: vec![],
        quadrature: QuadratureSpec { order: 3, ..Default::default() },
    }
    .build()
    .unwrap();
    let particles = Particles::sample(space, &Initial::Uniform { low: 0.0, high: 1.0 }, n, 1).unwrap();
    CpuEngine::new(model, particles).unwrap()
}

fn kernel_sum(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_log_kernel_sum_d3");
    for n in [256usize, 1024, 4096] {
        let engine = problem(n, 3, Variant::Measure);
        let space = engine.model().space;
        let k = Gaussian::new(&space, 0.1, true, "epsilon").unwrap();
        let pos = engine.particles().positions.clone();
        let lw = vec![-(n as f64).ln(); n];
        g.throughput(Throughput::Elements((n * n) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| log_kernel_sum(&space, &k, &pos, &pos, &lw));
        });
    }
    g.finish();
}

fn full_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_step_d3_n1024");
    let stepper = Stepper::new(Scheme::Exponential, StepSize::Fixed(1e-3)).unwrap();
    for v in [Variant::Measure, Variant::Blob, Variant::Smoothed] {
        let mut engine = problem(1024, 3, v);
        g.throughput(Throughput::Elements(1024 * 1024));
        g.bench_function(v.name(), |b| b.iter(|| engine.advance(1, &stepper, None).unwrap()));
    }
    g.finish();
}

/// The GPU engine at small N on whatever adapter is best here (lavapipe on a machine without a
/// GPU); large N belongs to `frflow bench` on a real card.
fn gpu_step(c: &mut Criterion) {
    let Ok(ctx) = frflow::engine::gpu::GpuContext::new(None) else {
        eprintln!("no GPU adapter: skipping the GPU benchmarks");
        return;
    };
    let mut g = c.benchmark_group(format!("gpu_step_d3 ({})", ctx.adapter_info().name));
    g.sample_size(10);
    let stepper = Stepper::new(Scheme::Exponential, StepSize::Fixed(1e-3)).unwrap();
    for n in [1024usize, 4096] {
        let engine = problem(n, 3, Variant::Measure);
        let (model, particles) = (engine.model().clone(), engine.particles().clone());
        let mut gpu = frflow::engine::gpu::GpuEngine::new(ctx.clone(), model, particles).unwrap();
        g.throughput(Throughput::Elements((n * n) as u64));
        g.bench_with_input(BenchmarkId::new("A", n), &n, |b, _| {
            b.iter(|| {
                gpu.advance(4, &stepper, None).unwrap();
                gpu.evaluate().unwrap()
            })
        });
    }
    g.finish();
}

/// One Sinkhorn pass (the inner loop of entropic W₂) on the CPU in f64 and on the GPU, host
/// packing, upload and readback included: what each Sinkhorn iteration pays twice.
fn sinkhorn_pass(c: &mut Criterion) {
    use frflow::transport::{Cost, LogSum, sinkhorn_log_sum};
    let mut g = c.benchmark_group("sinkhorn_log_sum_d2");
    g.sample_size(10);
    let cost = Cost::euclidean(2).unwrap();
    let gpu = frflow::engine::gpu::GpuContext::new(None).ok();
    for n in [1024usize, 4096] {
        let x = problem(n, 2, Variant::Measure).particles().positions.clone();
        let coeffs: Vec<f64> = (0..n).map(|i| -(n as f64).ln() + (i % 7) as f64).collect();
        g.throughput(Throughput::Elements((n * n) as u64));
        g.bench_with_input(BenchmarkId::new("cpu", n), &n, |b, _| {
            b.iter(|| sinkhorn_log_sum(&cost, &x, &x, &coeffs, 1e3));
        });
        if let Some(ctx) = &gpu {
            let mut pass = frflow::engine::gpu::SinkhornLogSum::new(ctx, &cost).unwrap();
            g.bench_with_input(BenchmarkId::new(ctx.adapter_info().name.clone(), n), &n, |b, _| {
                b.iter(|| pass.log_sum(&x, &x, &coeffs, 1e3).unwrap());
            });
        }
    }
    g.finish();
}

criterion_group!(benches, kernel_sum, full_step, gpu_step, sinkhorn_pass);
criterion_main!(benches);
