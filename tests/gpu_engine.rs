//! The GPU engine against the f64 CPU engine, on whatever adapter `FRFLOW_DEVICE` names or on
//! lavapipe (`llvmpipe`). Without an adapter the tests print a notice and pass, unless
//! `FRFLOW_REQUIRE_GPU=1`, when they fail.
//!
//! Tolerances: the GPU computes in f32 (relative rounding 6e-8). A log kernel sum over N terms
//! carries an absolute error of a few 1e-7 (the coefficients and scaled distances are O(10..100)
//! in log2 units, each rounded to 6e-8 relative), which becomes an error in h of the same size;
//! rates are compared relative to max |a| with 1e-4, two orders of magnitude above that, leaving
//! room for the cancellation in a_i = g_i − mean when |g| exceeds |a|.

use frflow::engine::cpu::CpuEngine;
use frflow::engine::gpu::{GpuContext, GpuEngine, GpuOptions};
use frflow::engine::{Diagnostics, Engine};
use frflow::model::{Divergence, Domain, Energy, ModelSpec, Potential, QuadratureSpec, Reference, Space, Variant};
use frflow::particles::{Initial, Particles, State};
use frflow::stepper::{Scheme, StepSize, Stepper};
use frflow::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

/// One device for all tests (pipelines are cached on it).
fn context() -> Option<GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        let selector = std::env::var("FRFLOW_DEVICE").unwrap_or_else(|_| "llvmpipe".to_string());
        match GpuContext::new(Some(&selector)) {
            Ok(c) => {
                eprintln!("gpu tests on {:?}", c.adapter_info().name);
                Some(c)
            }
            Err(e) => {
                if std::env::var("FRFLOW_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                    panic!("FRFLOW_REQUIRE_GPU=1 but no adapter matching {selector:?} could be opened: {e}");
                }
                eprintln!("NOTICE: skipping GPU tests, no adapter matching {selector:?}: {e}");
                None
            }
        }
    })
    .clone()
}

/// A test case: a model and particles.
#[derive(Clone, Debug)]
struct Case {
    variant: Variant,
    divergence: Divergence,
    /// "torus-uniform", "torus-gibbs" or "gaussian".
    domain: &'static str,
    dim: usize,
    n: usize,
    epsilon: f64,
    sigma: f64,
    potential: bool,
    seed: u64,
}

impl Case {
    fn new(variant: Variant, divergence: Divergence, domain: &'static str, dim: usize, n: usize) -> Self {
        Case { variant, divergence, domain, dim, n, epsilon: 0.3, sigma: 0.7, potential: true, seed: 7 }
    }

    fn build(&self) -> (frflow::model::Model, Particles) {
        let d = self.dim;
        let (domain, reference, init) = match self.domain {
            "torus-uniform" => {
                (Domain::Torus { side: 2.0 }, Reference::Uniform, Initial::Gaussian { mean: vec![1.0; d], std: 0.5 })
            }
            "torus-gibbs" => (
                Domain::Torus { side: 2.0 },
                Reference::Gibbs(Potential::Cosine { amplitude: 0.8, frequency: 1 }),
                Initial::Uniform { low: 0.0, high: 2.0 },
            ),
            "gaussian" => (
                Domain::Euclidean,
                Reference::Gaussian { mean: vec![0.2; d], std: 1.1 },
                Initial::Gaussian { mean: vec![0.5; d], std: 1.3 },
            ),
            other => panic!("unknown domain {other}"),
        };
        let space = Space::new(d, domain).unwrap();
        let energy = if self.potential {
            let u = match domain {
                Domain::Torus { .. } => Potential::Cosine { amplitude: 0.5, frequency: 2 },
                Domain::Euclidean => Potential::Quadratic { strength: 0.6, center: vec![-0.3; d] },
            };
            vec![Energy::Potential(u)]
        } else {
            vec![]
        };
        let model = ModelSpec {
            space,
            reference,
            divergence: self.divergence,
            sigma: self.sigma,
            epsilon: self.epsilon,
            variant: self.variant,
            energy,
            // Small rules keep the N·Q × N passes quick on lavapipe; the GPU and CPU use the same.
            quadrature: QuadratureSpec { order: 3, samples: 12, seed: 11 },
        }
        .build()
        .unwrap();
        let particles = Particles::sample(space, &init, self.n, self.seed).unwrap();
        (model, particles)
    }
}

/// Random non-uniform log-weights: log-uniform over `decades` orders of magnitude, normalised.
fn random_state(n: usize, decades: f64, seed: u64) -> State {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut lw: Vec<f64> = (0..n).map(|_| -decades * std::f64::consts::LN_10 * rng.random::<f64>()).collect();
    if n > 1 {
        lw[0] = 0.0;
        lw[n - 1] = -decades * std::f64::consts::LN_10;
    }
    let z = frflow::model::log_sum_exp(&lw);
    lw.iter_mut().for_each(|l| *l -= z);
    State { log_weights: lw, step: 0, time: 0.0 }
}

fn engines(ctx: &GpuContext, case: &Case, options: GpuOptions) -> (CpuEngine, GpuEngine) {
    let (model, particles) = case.build();
    let cpu = CpuEngine::new(model.clone(), particles.clone()).unwrap();
    let gpu = GpuEngine::with_options(ctx.clone(), model, particles, options).unwrap();
    (cpu, gpu)
}

/// max_i |a_gpu − a_cpu| / max_i |a_cpu|.
fn rate_error(cpu: &[f64], gpu: &[f64]) -> f64 {
    // For N = 1 every rate is 0 (up to rounding): compare absolutely there.
    let scale = cpu.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
    cpu.iter().zip(gpu).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale
}

fn compare_rates(ctx: &GpuContext, case: &Case, decades: f64) -> f64 {
    let (mut cpu, mut gpu) = engines(ctx, case, GpuOptions::default());
    let state = random_state(case.n, decades, case.seed + 1);
    cpu.set_state(state.clone()).unwrap();
    gpu.set_state(state).unwrap();
    let a = cpu.rates().unwrap();
    let b = gpu.rates().unwrap();
    let err = rate_error(&a, &b);
    let (dc, dg) = (cpu.evaluate().unwrap(), gpu.evaluate().unwrap());
    check_diagnostics(&dc, &dg, case);
    err
}

fn check_diagnostics(c: &Diagnostics, g: &Diagnostics, case: &Case) {
    let rel = |a: f64, b: f64| (a - b).abs() / a.abs().max(1e-12);
    assert!(rel(c.mass, g.mass) < 1e-5, "{case:?}: mass {} vs {}", c.mass, g.mass);
    assert!(rel(c.ess, g.ess) < 1e-4, "{case:?}: ess {} vs {}", c.ess, g.ess);
    assert!(
        (c.max_abs_rate - g.max_abs_rate).abs() <= 1e-4 * c.max_abs_rate.max(1e-6),
        "{case:?}: max|a| {} vs {}",
        c.max_abs_rate,
        g.max_abs_rate
    );
    assert!(
        (c.max_rate - g.max_rate).abs() <= 1e-4 * c.max_abs_rate.max(1e-6),
        "{case:?}: max a {} vs {}",
        c.max_rate,
        g.max_rate
    );
    assert!(
        (c.f_energy - g.f_energy).abs() < 1e-4 * (1.0 + c.f_energy.abs()),
        "{case:?}: F {} vs {}",
        c.f_energy,
        g.f_energy
    );
    match (c.energy, g.energy) {
        (None, None) => {}
        (Some(a), Some(b)) => assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "{case:?}: V {a} vs {b}"),
        other => panic!("{case:?}: energy {other:?}"),
    }
    for k in 0..c.mean.len() {
        let spread = c.variance[k].sqrt().max(1e-3);
        assert!((c.mean[k] - g.mean[k]).abs() < 1e-4 * spread, "{case:?}: mean[{k}] {} vs {}", c.mean[k], g.mean[k]);
        assert!(rel(c.variance[k], g.variance[k]) < 1e-3, "{case:?}: var[{k}] {} vs {}", c.variance[k], g.variance[k]);
    }
}

/// Runs every case and asserts the worst relative rate error.
fn check_cases(cases: &[(Case, f64)]) {
    let Some(ctx) = context() else { return };
    for (case, decades) in cases {
        let t = std::time::Instant::now();
        let err = compare_rates(&ctx, case, *decades);
        eprintln!(
            "{} {:?} {} d={} N={} eps={} decades={decades}: rate error {err:.2e} ({:.2}s)",
            case.variant.name(),
            case.divergence,
            case.domain,
            case.dim,
            case.n,
            case.epsilon,
            t.elapsed().as_secs_f64()
        );
        assert!(err < 1e-4, "{case:?}: relative rate error {err:e}");
    }
}

fn case(variant: Variant, divergence: Divergence, domain: &'static str, dim: usize, n: usize) -> Case {
    Case::new(variant, divergence, domain, dim, n)
}

use Divergence::{Chi2, Kl};
use Variant::{Blob, Exact, Measure, MeasureTarget, Smoothed, SmoothedTarget};

#[test]
fn rates_match_cpu_for_variants_a_and_b() {
    check_cases(&[
        (case(Measure, Kl, "torus-uniform", 1, 1), 0.0),
        (case(Measure, Kl, "torus-uniform", 2, 255), 3.0),
        (case(Measure, Chi2, "gaussian", 3, 1000), 2.0),
        (case(Measure, Kl, "torus-gibbs", 5, 4097), 4.0),
        (case(MeasureTarget, Kl, "gaussian", 1, 7), 1.0),
        (case(MeasureTarget, Chi2, "torus-uniform", 8, 255), 2.0),
        (case(MeasureTarget, Kl, "torus-gibbs", 2, 1000), 3.0),
        (Case { epsilon: 0.1, ..case(MeasureTarget, Kl, "torus-uniform", 3, 300) }, 2.0),
    ]);
}

#[test]
fn rates_match_cpu_for_variant_c() {
    check_cases(&[
        (case(Blob, Kl, "torus-uniform", 3, 1000), 30.0),
        (case(Blob, Chi2, "gaussian", 2, 255), 2.0),
        (case(Blob, Kl, "torus-gibbs", 1, 7), 1.0),
        (case(Blob, Kl, "gaussian", 8, 1000), 3.0),
        (Case { epsilon: 0.1, ..case(Blob, Chi2, "torus-uniform", 5, 257) }, 1.0),
    ]);
}

#[test]
fn rates_match_cpu_for_variants_d_and_d_prime() {
    check_cases(&[
        (case(Smoothed, Kl, "gaussian", 1, 255), 3.0),
        (case(Smoothed, Chi2, "torus-uniform", 2, 255), 2.0),
        (case(Smoothed, Kl, "torus-gibbs", 3, 100), 2.0),
        (case(Smoothed, Kl, "gaussian", 8, 129), 2.0),
        (case(SmoothedTarget, Kl, "gaussian", 5, 255), 2.0),
        (case(SmoothedTarget, Chi2, "torus-uniform", 3, 63), 2.0),
        (case(SmoothedTarget, Kl, "torus-gibbs", 2, 1000), 30.0),
        (case(SmoothedTarget, Kl, "torus-uniform", 1, 1), 0.0),
    ]);
}

#[test]
fn rates_match_cpu_for_the_exact_oracle() {
    check_cases(&[
        (case(Exact, Kl, "gaussian", 2, 1000), 3.0),
        (case(Exact, Chi2, "gaussian", 1, 7), 1.0),
        (case(Exact, Kl, "torus-uniform", 1, 255), 2.0),
        (case(Exact, Chi2, "gaussian", 8, 4097), 1.0),
    ]);
}

#[test]
fn rates_match_cpu_with_a_bandwidth_far_below_the_spacing_and_weights_over_30_decades() {
    // ε = 1e-4 against a spacing of ~2e-3: neighbours contribute exp(-200); in f32 a plain sum
    // of exp would give log 0 for the tiny weights.
    check_cases(&[
        (Case { epsilon: 1e-4, ..case(Measure, Kl, "torus-uniform", 1, 1000) }, 30.0),
        (Case { epsilon: 5e-3, ..case(Blob, Kl, "gaussian", 2, 1000) }, 30.0),
        (Case { epsilon: 1e-3, ..case(Smoothed, Kl, "gaussian", 1, 500) }, 30.0),
        (Case { epsilon: 2e-3, ..case(MeasureTarget, Chi2, "gaussian", 3, 1000) }, 30.0),
    ]);
}

#[test]
fn rates_match_cpu_without_divergence_or_without_energy() {
    check_cases(&[
        (Case { sigma: 0.0, ..case(Measure, Kl, "gaussian", 2, 255) }, 2.0),
        (Case { potential: false, ..case(Blob, Kl, "torus-uniform", 2, 255) }, 2.0),
    ]);
}

#[test]
fn rates_match_cpu_for_measure_variant_on_the_torus() {
    let Some(ctx) = context() else { return };
    let case = Case::new(Variant::Measure, Divergence::Kl, "torus-uniform", 2, 255);
    let err = compare_rates(&ctx, &case, 3.0);
    assert!(err < 1e-4, "{case:?}: relative rate error {err:e}");
}

fn _unused(_: Result<()>, _: Error, _: Scheme, _: StepSize, _: Stepper) {}
