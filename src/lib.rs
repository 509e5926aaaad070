//! frflow: kernelized Fisher–Rao gradient flows for entropic mean-field optimisation.
//!
//! Minimise V^σ(m) = F(m) + σ·D(m | π) over probability measures m. The flow keeps N particle
//! positions fixed and moves their weights by dw_i/dt = −w_i a_ε(μᴺ, X_i), where a_ε is the
//! kernelized first variation of V centred under μᴺ (Lazić, Liu, Majka, AISTATS 2026).
//!
//! The crate separates *what is minimised* ([`model`]: plain data, checked once) from *who
//! computes* ([`engine`]): the f64 CPU reference [`engine::cpu::CpuEngine`] and the wgpu GPU
//! engine compute the same rates. The two meet in one module per piece of the method: each term
//! of F in [`energy`] and each kernelization in [`variant`] holds its spec type beside its CPU
//! part, its GPU part and the shaders it names, and the engines loop over them.
//! [`stepper`] turns rates into weight updates, [`flow::run`] drives steps and observers.
//!
//! ```
//! use frflow::engine::{Engine, cpu::CpuEngine};
//! use frflow::flow::{RunOptions, run};
//! use frflow::model::{Divergence, Domain, ModelSpec, QuadratureSpec, Reference, Space, Variant};
//! use frflow::particles::{Initial, Particles};
//! use frflow::stepper::{Scheme, StepSize, Stepper};
//!
//! // SPEC T2: π = N(0, 1), no energy, variant B (unbiased for Gaussians), σ = 1, ε = 0.5.
//! let space = Space::new(1, Domain::Euclidean)?;
//! let model = ModelSpec {
//!     space,
//!     reference: Reference::Gaussian { mean: vec![0.0], std: 1.0 },
//!     divergence: Divergence::Kl,
//!     sigma: 1.0,
//!     epsilon: 0.5,
//!     variant: Variant::MeasureTarget,
//!     energy: vec![],
//!     quadrature: QuadratureSpec::default(),
//! }
//! .build()?;
//! let init = Initial::Gaussian { mean: vec![0.8], std: 1.5 };
//! let particles = Particles::sample(space, &init, 512, 1)?;
//! let mut engine = CpuEngine::new(model, particles)?;
//! let options = RunOptions {
//!     stepper: Stepper::new(Scheme::Euler, StepSize::Fixed(0.05))?,
//!     max_steps: None,
//!     final_time: Some(1.0),
//!     tolerance: None,
//!     every: 10,
//! };
//! let summary = run(&mut engine, &options, &mut [], None)?;
//! let d = &summary.diagnostics;
//! assert!((d.mass - 1.0).abs() < 1e-12);
//! println!("t = {}: mean {:.4}, variance {:.4}", d.time, d.mean[0], d.variance[0]);
//! # Ok::<(), frflow::Error>(())
//! ```
#![warn(missing_docs)]

pub mod bench;
pub mod config;
pub mod energy;
pub mod engine;
pub mod error;
#[cfg(feature = "cli")]
pub mod experiments;
pub mod flow;
pub mod io;
pub mod model;
pub mod observe;
pub mod oracle;
pub mod particles;
#[cfg(feature = "cli")]
pub mod pictures;
#[cfg(feature = "cli")]
pub mod plot;
#[cfg(feature = "cli")]
pub mod runner;
pub mod stepper;
pub mod transport;
pub mod variant;

pub use error::{Error, Result};
/// The wgpu frflow is built on, so that a host application passing its own device
/// (`GpuContext::from_device`) or copying the weights (`GpuEngine::copy_log_weights`) uses the same
/// version.
pub use wgpu;

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
