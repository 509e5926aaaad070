//! Structural properties of the flow that hold for every problem (SPEC §2, §4, §6): mass
//! conservation, positivity, the energy's monotone decrease along gradient-flow variants, the
//! centring of the rates, and the errors that Euler's positivity condition and non-finite weights
//! must raise.

use frflow::Error;
use frflow::energy::Interaction;
use frflow::engine::cpu::CpuEngine;
use frflow::engine::{Diagnostics, Engine};
use frflow::flow::{Coupled, Observer, RunOptions, Summary, Termination, run, run_coupled};
use frflow::model::{Divergence, Domain, Energy, ModelSpec, Potential, QuadratureSpec, Reference, Space, Variant};
use frflow::particles::{Initial, Particles, State};
use frflow::stepper::{Scheme, StepSize, Stepper};
use std::cell::RefCell;
use std::rc::Rc;

/// One test problem: a domain with its reference, energy and initial law.
#[derive(Clone, Debug)]
struct Problem {
    name: &'static str,
    space: Space,
    reference: Reference,
    energy: Vec<Energy>,
    init: Initial,
    epsilon: f64,
}

/// The torus [0, 1)^d with a uniform π, a cosine potential and a concentrated μ₀ (wrapped N(0.3, 0.2²)).
fn torus(d: usize) -> Problem {
    Problem {
        name: "torus",
        space: Space::new(d, Domain::Torus { side: 1.0 }).unwrap(),
        reference: Reference::Uniform,
        energy: vec![Energy::Potential(Potential::Cosine { amplitude: 0.5, frequency: 2 })],
        init: Initial::Gaussian { mean: vec![0.3; d], std: 0.2 },
        // Small enough that the periodised kernel needs no image cells (cheap minimum image).
        epsilon: 0.08,
    }
}

/// R^d with a Gaussian π, a quadratic potential plus a Gaussian interaction (a non-linear F), and
/// μ₀ narrower than π (so that χ² is finite).
fn euclidean(d: usize) -> Problem {
    Problem {
        name: "R^d",
        space: Space::new(d, Domain::Euclidean).unwrap(),
        reference: Reference::Gaussian { mean: vec![0.0; d], std: 1.0 },
        energy: vec![
            Energy::Potential(Potential::Quadratic { strength: 0.5, center: vec![-0.5; d] }),
            Energy::Interaction(Interaction { strength: 0.3, width: 0.7 }),
        ],
        init: Initial::Gaussian { mean: vec![0.5; d], std: 0.8 },
        epsilon: 0.4,
    }
}

/// R^d with a Gibbs π ∝ exp(−U_π) (K_ε π by quadrature for B and D′); KL only.
fn gibbs(d: usize) -> Problem {
    Problem {
        name: "R^d Gibbs",
        space: Space::new(d, Domain::Euclidean).unwrap(),
        reference: Reference::Gibbs(Potential::DoubleWell { height: 0.5, scale: 1.0 }),
        energy: vec![],
        init: Initial::Gaussian { mean: vec![0.2; d], std: 1.0 },
        epsilon: 0.4,
    }
}

const QUADRATURE: QuadratureSpec = QuadratureSpec { order: 3, samples: 64, seed: 0x5eed };

fn engine(p: &Problem, variant: Variant, divergence: Divergence, sigma: f64, n: usize, seed: u64) -> CpuEngine {
    let model = ModelSpec {
        space: p.space,
        reference: p.reference.clone(),
        divergence,
        sigma,
        epsilon: p.epsilon,
        variant,
        energy: p.energy.clone(),
        // A 3-point Gauss–Hermite rule per coordinate (Q = 3^d) keeps D and D′ cheap; the properties
        // tested here hold for any rule, since h is the exact gradient of the discretised energy.
        quadrature: QUADRATURE,
    }
    .build()
    .expect("valid model");
    let particles = Particles::sample(p.space, &p.init, n, seed).expect("valid particles");
    CpuEngine::new(model, particles).expect("valid engine")
}

fn options(scheme: Scheme, step_size: StepSize, max_steps: Option<u64>, final_time: Option<f64>) -> RunOptions {
    RunOptions { stepper: Stepper::new(scheme, step_size).unwrap(), max_steps, final_time, tolerance: None, every: 1 }
}

/// Everything a run showed its observer, step by step.
#[derive(Default)]
struct Trace {
    diagnostics: Vec<Diagnostics>,
    /// Σ_i w_i recomputed from the state, and the smallest log-weight, per observed step.
    state_mass: Vec<f64>,
    min_log_weight: Vec<f64>,
}

/// Records every step (cadence 1) into a shared [`Trace`].
struct Recorder(Rc<RefCell<Trace>>);

impl Observer for Recorder {
    fn every(&self) -> u64 {
        1
    }

    fn observe(&mut self, diagnostics: &Diagnostics, engine: &mut dyn Engine) -> frflow::Result<()> {
        let state = engine.state()?;
        let mut t = self.0.borrow_mut();
        t.diagnostics.push(diagnostics.clone());
        t.state_mass.push(state.log_weights.iter().map(|l| l.exp()).sum());
        t.min_log_weight.push(state.log_weights.iter().copied().fold(f64::INFINITY, f64::min));
        Ok(())
    }
}

/// Runs with a recorder at every step; returns the summary and the trace.
fn traced_run(engine: &mut CpuEngine, options: &RunOptions) -> (frflow::Result<Summary>, Trace) {
    let trace = Rc::new(RefCell::new(Trace::default()));
    let mut observers: Vec<Box<dyn Observer>> = vec![Box::new(Recorder(trace.clone()))];
    let summary = run(engine, options, &mut observers, None);
    drop(observers);
    let trace = Rc::try_unwrap(trace).ok().expect("sole owner").into_inner();
    (summary, trace)
}

fn assert_mass_and_positivity(label: &str, trace: &Trace) {
    // Euler: Σ w_i (1 − h a_i) = Σ w_i exactly since Σ w_i a_i = 0; in floating point each step adds
    // O(1e-16) relative error, so 1000 steps stay well inside 1e-12. The exponential step
    // renormalises every step.
    for (k, (d, m)) in trace.diagnostics.iter().zip(&trace.state_mass).enumerate() {
        assert!((d.mass - 1.0).abs() < 1e-12, "{label}: mass {} at step {k}", d.mass);
        assert!((m - 1.0).abs() < 1e-12, "{label}: state mass {m} at step {k}");
    }
    for (k, l) in trace.min_log_weight.iter().enumerate() {
        assert!(l.is_finite(), "{label}: a weight is not positive (log w = {l}) at step {k}");
    }
}

#[test]
fn euler_conserves_mass_and_positivity_over_1000_steps() {
    for (p, variant) in [(euclidean(1), Variant::Measure), (torus(1), Variant::Blob)] {
        let mut e = engine(&p, variant, Divergence::Kl, 0.7, 300, 1);
        let (summary, trace) = traced_run(&mut e, &options(Scheme::Euler, StepSize::Fixed(0.01), Some(1000), None));
        let summary = summary.expect("no positivity error at h = 0.01");
        let label = format!("{} d={} {}", p.name, p.space.dim, variant.name());
        assert_eq!(summary.diagnostics.step, 1000, "{label}");
        assert_eq!(trace.diagnostics.len(), 1001, "{label}: every step observed");
        assert_mass_and_positivity(&label, &trace);
        // The flow moved the weights far from uniform, so the checks above are not vacuous.
        assert!(summary.diagnostics.ess < 0.9 * 300.0, "{label}: ESS {}", summary.diagnostics.ess);
    }
}

#[test]
fn energy_never_increases_along_gradient_flow_variants() {
    // SPEC §2: dV/dt = −Σ w_i a_i² ≤ 0 when h_i is the gradient of the discrete divergence, which it
    // is for C, D, D′ (and the exact oracle). A step of size h lowers V by h Σ w a² − O(h²), so at
    // h = 2e-3 the decrease dominates; the slack 1e-12 |V| only absorbs rounding in evaluating V.
    let mut checked = 0;
    for p in [torus(1), torus(2), euclidean(1), euclidean(2)] {
        let n = if p.space.dim == 1 { 120 } else { 80 };
        for variant in [Variant::Blob, Variant::Smoothed, Variant::SmoothedTarget, Variant::Exact] {
            for divergence in [Divergence::Kl, Divergence::Chi2] {
                let label = format!("{} d={} {} {divergence:?}", p.name, p.space.dim, variant.name());
                let mut e = engine(&p, variant, divergence, 0.5, n, 7);
                let (summary, trace) =
                    traced_run(&mut e, &options(Scheme::Euler, StepSize::Fixed(2e-3), Some(200), None));
                summary.unwrap_or_else(|err| panic!("{label}: {err}"));
                let v: Vec<f64> = trace.diagnostics.iter().map(|d| d.energy.expect("a gradient flow")).collect();
                assert_eq!(v.len(), 201, "{label}");
                for k in 1..v.len() {
                    assert!(
                        v[k] <= v[k - 1] + 1e-12 * v[k - 1].abs(),
                        "{label}: V rose at step {k}: {} → {}",
                        v[k - 1],
                        v[k]
                    );
                }
                // Strictly lower overall: the test watches a real descent, not a stationary state.
                assert!(v[200] < v[0] - 1e-6, "{label}: {} → {}", v[0], v[200]);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 32);
}

#[test]
fn variants_a_and_b_report_no_energy() {
    for variant in [Variant::Measure, Variant::MeasureTarget] {
        let mut e = engine(&euclidean(1), variant, Divergence::Kl, 0.5, 50, 3);
        assert_eq!(e.evaluate().unwrap().energy, None, "{}", variant.name());
    }
}

/// Particles on a line with one far out in the potential's tail, whose rate is then the largest.
fn positivity_engine() -> (CpuEngine, usize) {
    let space = Space::new(1, Domain::Euclidean).unwrap();
    let mut positions: Vec<f64> = (0..40).map(|i| -1.0 + 0.05 * f64::from(i)).collect();
    let outlier = 17;
    positions.insert(outlier, 3.5);
    let model = ModelSpec {
        space,
        reference: Reference::Gaussian { mean: vec![0.0], std: 1.0 },
        divergence: Divergence::Kl,
        sigma: 0.5,
        epsilon: 0.3,
        variant: Variant::Measure,
        energy: vec![Energy::Potential(Potential::Quadratic { strength: 4.0, center: vec![0.0] })],
        quadrature: QuadratureSpec::default(),
    }
    .build()
    .unwrap();
    (CpuEngine::new(model, Particles::from_positions(space, positions).unwrap()).unwrap(), outlier)
}

#[test]
fn euler_positivity_violation_names_the_step_and_the_particle() {
    let (mut e, outlier) = positivity_engine();
    let small = Stepper::new(Scheme::Euler, StepSize::Fixed(1e-3)).unwrap();
    assert_eq!(e.advance(5, &small, None).unwrap(), 5);
    let rates = e.rates().unwrap();
    let (argmax, max_rate) =
        rates.iter().copied().enumerate().fold((0, f64::NEG_INFINITY), |a, (i, r)| if r > a.1 { (i, r) } else { a });
    assert_eq!(argmax, outlier, "the outlier has the largest rate");
    let second =
        rates.iter().enumerate().filter(|(i, _)| *i != outlier).map(|(_, r)| *r).fold(f64::NEG_INFINITY, f64::max);
    assert!(second < 0.5 * max_rate, "the largest rate is unambiguous: {second} vs {max_rate}");
    let before = e.state().unwrap();

    // h·max a = 0.999: still a valid step (checked on a copy of the state, then restored).
    let ok = Stepper::new(Scheme::Euler, StepSize::Fixed(0.999 / max_rate)).unwrap();
    assert_eq!(e.advance(1, &ok, None).unwrap(), 1);
    e.set_state(before.clone()).unwrap();

    // h·max a = 1.0001, a hair above the limit (every other particle stays below h·a = 0.5): an error.
    let h = 1.0001 / max_rate;
    let bad = Stepper::new(Scheme::Euler, StepSize::Fixed(h)).unwrap();
    match e.advance(3, &bad, None) {
        Err(Error::Positivity { step, particle, h_times_rate, h: h_err }) => {
            assert_eq!(step, 5, "the failing step is the 6th (index 5)");
            assert_eq!(particle, outlier);
            assert!((h_times_rate - 1.0001).abs() < 1e-12, "{h_times_rate}");
            assert_eq!(h_err, h);
        }
        other => panic!("expected Error::Positivity, got {other:?}"),
    }
    // The error is raised before any weight changes: the state after 5 steps is intact.
    assert_eq!(e.state().unwrap(), before);

    // The run loop passes the error through unchanged (here at step 0, from a fresh engine).
    let (mut e, outlier) = positivity_engine();
    let max_rate = e.evaluate().unwrap().max_rate;
    let opts = options(Scheme::Euler, StepSize::Fixed(2.0 / max_rate), Some(10), None);
    match run(&mut e, &opts, &mut [], None) {
        Err(Error::Positivity { step: 0, particle, .. }) => assert_eq!(particle, outlier),
        other => panic!("expected Error::Positivity at step 0, got {other:?}"),
    }
}

#[test]
fn non_finite_weights_are_errors() {
    let (mut e, _) = positivity_engine();
    let n = e.len();
    // A weight of e^800 overflows to +∞: the rates become NaN, which must be reported, not used.
    let mut lw = vec![-(n as f64).ln(); n];
    lw[3] = 800.0;
    e.set_state(State { log_weights: lw, step: 2, time: 0.1 }).unwrap();
    match e.evaluate() {
        Err(Error::NonFinite { step: 2, quantity: "rate", .. }) => {}
        other => panic!("expected Error::NonFinite for the rates, got {other:?}"),
    }
    let stepper = Stepper::new(Scheme::Euler, StepSize::Fixed(1e-3)).unwrap();
    assert!(matches!(e.advance(1, &stepper, None), Err(Error::NonFinite { step: 2, .. })));
    let opts = options(Scheme::Exponential, StepSize::Fixed(1e-3), Some(10), None);
    assert!(matches!(run(&mut e, &opts, &mut [], None), Err(Error::NonFinite { .. })));

    // NaN and +∞ log-weights are refused outright; −∞ (a zero weight) is allowed.
    for bad in [f64::NAN, f64::INFINITY] {
        let mut lw = vec![-(n as f64).ln(); n];
        lw[0] = bad;
        assert!(
            matches!(e.set_state(State { log_weights: lw, step: 0, time: 0.0 }), Err(Error::Invalid { .. })),
            "{bad}"
        );
    }
}

#[test]
fn a_zero_weight_is_allowed_for_any_particle() {
    // `set_state` accepts log w = −∞ (a weight of exactly 0, e.g. from a checkpoint). Such a particle
    // contributes nothing to K_ε μᴺ and its weight stays 0; everything else must stay finite.
    // This fails for particle 0 (but not for particle 5): `log_kernel_sum` in src/engine/cpu.rs
    // starts its online log-sum-exp at max = −∞ and, when the first source's term is also −∞,
    // takes the `e <= max` branch and adds exp(−∞ − (−∞)) = exp(NaN) to the accumulator, so every
    // kernel sum — and every rate — becomes NaN.
    for zero in [5, 0] {
        let (mut e, _) = positivity_engine();
        let n = e.len();
        let mut lw = vec![-((n - 1) as f64).ln(); n];
        lw[zero] = f64::NEG_INFINITY;
        e.set_state(State { log_weights: lw, step: 0, time: 0.0 }).unwrap();
        let d = e.evaluate().unwrap_or_else(|err| panic!("zero weight at particle {zero}: {err}"));
        assert!((d.mass - 1.0).abs() < 1e-12, "particle {zero}: mass {}", d.mass);
        let stepper = Stepper::new(Scheme::Euler, StepSize::Fixed(1e-3)).unwrap();
        e.advance(10, &stepper, None).unwrap_or_else(|err| panic!("zero weight at particle {zero}: {err}"));
        let state = e.state().unwrap();
        assert_eq!(state.log_weights[zero], f64::NEG_INFINITY, "a zero weight stays zero");
        assert!(state.log_weights.iter().enumerate().all(|(i, l)| i == zero || l.is_finite()));
    }
}

#[test]
fn exponential_step_keeps_mass_one_and_weights_positive() {
    // A step size at which Euler fails at once: the exponential step is unconditionally positive.
    let (mut e, _) = positivity_engine();
    let max_rate = e.evaluate().unwrap().max_rate;
    let h = 3.0 / max_rate;
    let (summary, trace) = traced_run(&mut e, &options(Scheme::Exponential, StepSize::Fixed(h), Some(500), None));
    summary.expect("the exponential step never fails");
    assert_eq!(trace.diagnostics.len(), 501);
    assert_mass_and_positivity("exponential", &trace);
    let (mut e, _) = positivity_engine();
    let r = run(&mut e, &options(Scheme::Euler, StepSize::Fixed(h), Some(500), None), &mut [], None);
    assert!(matches!(r, Err(Error::Positivity { step: 0, .. })), "Euler at the same h: {r:?}");

    // Also on the torus and with the blob variant.
    let mut e = engine(&torus(2), Variant::Blob, Divergence::Kl, 0.7, 200, 5);
    let (summary, trace) = traced_run(&mut e, &options(Scheme::Exponential, StepSize::Fixed(0.2), Some(300), None));
    summary.expect("runs");
    assert_mass_and_positivity("exponential torus C", &trace);
}

/// An unkernelized (exact-variant) flow with linear F: its rates decay like e^{−σt} from ≈ 80
/// at t = 0 (particles far in μ₀'s tail) towards 0, so an automatic step starts limited by the
/// rates and ends at h_max.
fn decaying_rates_engine() -> CpuEngine {
    let p = Problem {
        name: "R^1 tempering",
        space: Space::new(1, Domain::Euclidean).unwrap(),
        reference: Reference::Gaussian { mean: vec![0.0], std: 1.0 },
        energy: vec![Energy::Potential(Potential::Quadratic { strength: 2.0, center: vec![1.5] })],
        init: Initial::Gaussian { mean: vec![-1.0], std: 1.3 },
        epsilon: 0.5,
    };
    engine(&p, Variant::Exact, Divergence::Kl, 0.7, 2000, 4)
}

#[test]
fn automatic_step_never_violates_positivity_and_respects_h_max() {
    let (safety, h_max, t_end) = (0.5, 0.05, 8.0);
    for scheme in [Scheme::Euler, Scheme::Exponential] {
        let mut e = decaying_rates_engine();
        let d0 = e.evaluate().unwrap();
        let bound0 = if scheme == Scheme::Euler { d0.max_rate } else { d0.max_abs_rate };
        assert!(safety / bound0 < 0.5 * h_max, "{scheme:?}: the rates must limit the first step ({bound0})");
        let (summary, trace) =
            traced_run(&mut e, &options(scheme, StepSize::Auto { safety, h_max }, None, Some(t_end)));
        let summary = summary.unwrap_or_else(|err| panic!("{scheme:?} with h = auto: {err}"));
        assert!((summary.diagnostics.time - t_end).abs() < 1e-9);
        assert_mass_and_positivity(&format!("{scheme:?} auto"), &trace);
        // Each step follows h = min(h_max, safety / bound) (bound = max a for Euler, max |a| for the
        // exponential step), except the last, which is shortened to land on t_end.
        let (mut capped, mut limited) = (0, 0);
        for w in trace.diagnostics.windows(2) {
            let h = w[1].time - w[0].time;
            let bound = if scheme == Scheme::Euler { w[0].max_rate } else { w[0].max_abs_rate };
            let expected = h_max.min(safety / bound);
            assert!(h <= h_max * (1.0 + 1e-12), "{scheme:?}: h = {h} > h_max at step {}", w[0].step);
            assert!(h * w[0].max_rate <= safety * (1.0 + 1e-12), "{scheme:?}: h·max a = {}", h * w[0].max_rate);
            if (w[1].time - t_end).abs() < 1e-9 {
                assert!(h <= expected * (1.0 + 1e-12), "{scheme:?}: last step {h} vs {expected}");
                continue;
            }
            // h is recovered as a difference of times ≈ 8, so it carries ≈ 1e-15 absolute error.
            assert!((h - expected).abs() <= 1e-12, "{scheme:?}: h = {h}, rule gives {expected}");
            if expected == h_max { capped += 1 } else { limited += 1 }
        }
        assert!(capped > 10 && limited > 10, "{scheme:?}: {capped} steps at h_max, {limited} limited by the rates");
    }
    // With a particle whose rate stays large, Euler's automatic step also never fails.
    let (mut e, _) = positivity_engine();
    let opts = options(Scheme::Euler, StepSize::Auto { safety: 0.9, h_max: 1.0 }, Some(300), None);
    let (summary, trace) = traced_run(&mut e, &opts);
    summary.expect("h = auto never violates positivity");
    assert_mass_and_positivity("Euler auto, outlier", &trace);
}

/// Deterministic, far-from-uniform normalised log-weights.
fn uneven_log_weights(n: usize) -> Vec<f64> {
    let mut lw: Vec<f64> = (0..n).map(|i| 2.0 * (1.7 * i as f64).sin() + 0.5 * (0.3 * i as f64).cos()).collect();
    frflow::stepper::normalise(&mut lw);
    lw
}

#[test]
fn rates_are_centred_for_every_variant_divergence_and_domain() {
    // SPEC §2: a = g − ∫ g dm, so Σ w_i a_i = 0. The engine centres with a pairwise sum, so the
    // residual is rounding, ≈ 1e-16 · max |g|; 1e-12 · max(1, max |a|) leaves ample margin.
    let mut checked = 0;
    for p in [torus(1), torus(2), euclidean(1), euclidean(2), gibbs(1), gibbs(2)] {
        for variant in Variant::ALL {
            for divergence in [Divergence::Kl, Divergence::Chi2] {
                let label = format!("{} d={} {} {divergence:?}", p.name, p.space.dim, variant.name());
                if divergence == Divergence::Chi2 && matches!(p.reference, Reference::Gibbs(_)) {
                    // χ² needs π's normalising constant: building such a model must fail.
                    let spec = ModelSpec {
                        space: p.space,
                        reference: p.reference.clone(),
                        divergence,
                        sigma: 0.5,
                        epsilon: p.epsilon,
                        variant,
                        energy: vec![],
                        quadrature: QUADRATURE,
                    };
                    assert!(matches!(spec.build(), Err(Error::Invalid { .. })), "{label}");
                    continue;
                }
                let mut e = engine(&p, variant, divergence, 0.5, 64, 9);
                e.set_state(State { log_weights: uneven_log_weights(64), step: 0, time: 0.0 }).unwrap();
                let w: Vec<f64> = e.state().unwrap().weights();
                let a = e.rates().unwrap();
                let scale = a.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                let centred: f64 = w.iter().zip(&a).map(|(w, a)| w * a).sum();
                assert!(centred.abs() <= 1e-12 * scale, "{label}: Σ w a = {centred:e} (max |a| = {scale})");
                // Non-trivial rates: the check is not 0 = 0.
                assert!(scale > 1e-3, "{label}: max |a| = {scale}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 6 * 6 * 2 - 2 * 6);
}

/// A user's stopping rule through `flow::run`: a `StopWhen` predicate on the diagnostics ends the
/// run as `Termination::Stopped` with its reason, at the first checked step where it holds, and
/// the weights there are those of an uninterrupted run to that step (the loop never changes them).
#[test]
fn a_stop_predicate_ends_the_run_with_its_own_termination() {
    use frflow::flow::StopWhen;
    let p = euclidean(1);
    let opts = options(Scheme::Euler, StepSize::Fixed(0.01), Some(10_000), None);
    let mut e = engine(&p, Variant::MeasureTarget, Divergence::Kl, 1.0, 300, 4);
    // The mean moves from about 0.5 towards the minimiser's −0.17.
    assert!(e.evaluate().unwrap().mean[0] > 0.3);
    let stop = StopWhen::new(5, "mean below 0.2", |d: &Diagnostics, _: &mut dyn Engine| Ok(d.mean[0] < 0.2));
    let summary = run(&mut e, &opts, &mut [Box::new(stop)], None).unwrap();
    assert_eq!(summary.termination, Termination::Stopped);
    assert_eq!(summary.stop_reason.as_deref(), Some("mean below 0.2"));
    let step = summary.diagnostics.step;
    assert!(step > 0 && step % 5 == 0 && step < 10_000, "stopped at step {step}");
    assert!(summary.diagnostics.mean[0] < 0.2);
    // The same run to that step, without the observer, gives the same weights bit for bit.
    let mut plain = engine(&p, Variant::MeasureTarget, Divergence::Kl, 1.0, 300, 4);
    let to_step = options(Scheme::Euler, StepSize::Fixed(0.01), Some(step), None);
    let s = run(&mut plain, &to_step, &mut [], None).unwrap();
    assert_eq!(s.termination, Termination::MaxSteps);
    assert_eq!(plain.state().unwrap().log_weights, e.state().unwrap().log_weights);
}

/// A coupled system with the constant rates `rate` at every particle, which records the step
/// sizes it is given and may own an engine of its own.
struct ConstantRates {
    rate: f64,
    n: usize,
    steps: Vec<(u64, f64)>,
    own: Option<Box<dyn Engine>>,
}

impl Coupled for ConstantRates {
    fn prepare(&mut self, _: f64) -> frflow::Result<(f64, f64)> {
        Ok((self.rate, self.rate.abs()))
    }

    fn engine(&mut self) -> Option<&mut dyn Engine> {
        let own: &mut dyn Engine = self.own.as_deref_mut()?;
        Some(own)
    }

    fn step(&mut self, stepper: &Stepper, h: f64, step: u64) -> frflow::Result<()> {
        assert_eq!(stepper.step_size, StepSize::Fixed(h));
        let mut lw = vec![0.0; self.n];
        stepper.apply(&mut lw, &vec![self.rate; self.n], h, step)?;
        self.steps.push((step, h));
        Ok(())
    }
}

/// `flow::run_coupled` takes one step at a time with the automatic h chosen from both systems'
/// rates: a coupled system with rates 100, far above the engine's, holds Euler's h at
/// safety / 100 = 0.005, and the engine's weights are then those of a plain run with that fixed
/// h, bit for bit (the loop adds nothing of its own).
#[test]
fn a_coupled_system_bounds_the_shared_step_size() {
    let p = euclidean(1);
    let auto = options(Scheme::Euler, StepSize::Auto { safety: 0.5, h_max: 0.1 }, None, Some(0.1));
    let mut e = engine(&p, Variant::MeasureTarget, Divergence::Kl, 1.0, 50, 4);
    assert!(e.evaluate().unwrap().max_rate < 10.0, "the engine's own rates would allow a larger h");
    let mut c = ConstantRates { rate: 100.0, n: 50, steps: Vec::new(), own: None };
    let summary = run_coupled(&mut e, &mut c, &auto, &mut [], None).unwrap();
    assert_eq!(summary.termination, Termination::FinalTime);
    assert_eq!(summary.steps_this_run, 20);
    assert_eq!(c.steps.len(), 20);
    for (k, (step, h)) in c.steps.iter().enumerate() {
        assert_eq!(*step, k as u64);
        // The last step may be shortened by rounding in t to land on T.
        assert!((h - 0.005).abs() < 1e-15, "step {k}: h = {h}");
    }
    let mut plain = engine(&p, Variant::MeasureTarget, Divergence::Kl, 1.0, 50, 4);
    let fixed = options(Scheme::Euler, StepSize::Fixed(0.005), None, Some(0.1));
    assert_eq!(run(&mut plain, &fixed, &mut [], None).unwrap().steps_this_run, 20);
    assert_eq!(plain.state().unwrap(), e.state().unwrap());
}

/// An engine that takes no step when asked would make the run loop spin for ever: `flow::run`
/// and `flow::run_coupled` end with an error naming it, be it the run's engine or a coupled
/// system's own.
#[test]
fn an_engine_that_takes_no_steps_is_a_named_error() {
    /// The CPU engine, except that it never advances.
    struct Stalled(CpuEngine);
    impl Engine for Stalled {
        fn name(&self) -> String {
            "stalled".into()
        }
        fn len(&self) -> usize {
            self.0.len()
        }
        fn evaluate(&mut self) -> frflow::Result<Diagnostics> {
            self.0.evaluate()
        }
        fn rates(&mut self) -> frflow::Result<Vec<f64>> {
            self.0.rates()
        }
        fn advance(&mut self, _: u64, _: &Stepper, _: Option<f64>) -> frflow::Result<u64> {
            Ok(0)
        }
        fn state(&mut self) -> frflow::Result<State> {
            self.0.state()
        }
        fn set_state(&mut self, state: State) -> frflow::Result<()> {
            self.0.set_state(state)
        }
    }
    let p = euclidean(1);
    let new = || engine(&p, Variant::MeasureTarget, Divergence::Kl, 1.0, 20, 4);
    let opts = options(Scheme::Euler, StepSize::Fixed(0.01), Some(5), None);
    let is_stalled =
        |e: Error| matches!(&e, Error::Invalid { field, value, .. } if field == "engine" && value == "stalled");
    assert!(is_stalled(run(&mut Stalled(new()), &opts, &mut [], None).unwrap_err()));
    let mut c = ConstantRates { rate: 1.0, n: 20, steps: Vec::new(), own: None };
    assert!(is_stalled(run_coupled(&mut Stalled(new()), &mut c, &opts, &mut [], None).unwrap_err()));
    c.own = Some(Box::new(Stalled(new())));
    assert!(is_stalled(run_coupled(&mut new(), &mut c, &opts, &mut [], None).unwrap_err()));
    // The coupled system's own step never came: the error came first.
    assert!(c.steps.is_empty());
}
