//! The TOML configuration: [`Config`] is the file as written, [`Config::build`] turns it into a
//! checked [`Problem`] (model, particles, run options, outputs).
//!
//! Every table rejects unknown keys. Type errors and unknown keys come back as [`Error::Config`]
//! with toml's message (which names the key and the line); every value that parses but is out of
//! range comes back as [`Error::Invalid`] naming the dotted key (`kernel.epsilon`,
//! `energy[0].sample.file`, …), the value and what is allowed. `nan` and `inf` are rejected
//! everywhere. The reference of every key is the README's configuration reference.
//!
//! ```
//! use frflow::config::Config;
//! let text = r#"
//!     sigma = 1.0
//!     [domain]
//!     kind = "euclidean"
//!     dim = 1
//!     [reference]
//!     kind = "gaussian"
//!     mean = 0.0
//!     std = 1.0
//!     [kernel]
//!     epsilon = 0.5
//!     variant = "B"
//!     [particles]
//!     n = 64
//!     init = { kind = "gaussian", mean = 0.8, std = 1.5 }
//!     [time]
//!     h = 0.05
//!     final_time = 4.0
//! "#;
//! let problem = Config::from_str(text, "<example>")?.build(std::path::Path::new("."))?;
//! assert_eq!(problem.particles.len(), 64);
//! # Ok::<(), frflow::Error>(())
//! ```

pub use crate::energy::EnergyConfig;
use crate::engine::gpu::{GpuOptions, ImageExponentials};
use crate::error::{Error, Result};
use crate::flow::RunOptions;
use crate::io::data::{MAX_GENERATED_ROWS, gaussian_mixture_sample, load_points};
use crate::model::{
    CustomPotential, Divergence, Domain, MAX_DIM, Model, ModelSpec, Points, Potential, QuadratureSpec, Reference,
    Space, Variant,
};
use crate::particles::{Component, Initial, Particles};
use crate::stepper::{Scheme, StepSize, Stepper};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The largest particle count a config may ask for (a guard against a mistyped `particles.n`).
pub const MAX_PARTICLES: usize = 1 << 26;

/// Which engine computes the rates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// The f64 CPU reference engine.
    Cpu,
    /// The wgpu GPU engine.
    Gpu,
    /// A hardware GPU when there is one, else the CPU engine.
    #[default]
    Auto,
}

impl EngineChoice {
    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EngineChoice::Cpu => "cpu",
            EngineChoice::Gpu => "gpu",
            EngineChoice::Auto => "auto",
        }
    }

    /// The engine this choice takes on this machine, the one place `auto` is decided: a hardware
    /// GPU when one exists, else the CPU engine (a software GPU such as lavapipe is slower than the
    /// CPU engine, so it is used only when asked for with `gpu`). `cpu` and `gpu` are themselves.
    pub fn resolve(self) -> EngineChoice {
        match self {
            EngineChoice::Auto if crate::engine::gpu::hardware_adapter_available() => EngineChoice::Gpu,
            EngineChoice::Auto => EngineChoice::Cpu,
            c => c,
        }
    }
}

impl std::str::FromStr for EngineChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(EngineChoice::Cpu),
            "gpu" => Ok(EngineChoice::Gpu),
            "auto" => Ok(EngineChoice::Auto),
            _ => Err(Error::invalid("engine", s, "cpu, gpu or auto")),
        }
    }
}

impl std::fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a run writes, and how often.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputOptions {
    /// Diagnostics and trace rows every this many steps (≥ 1; also [`RunOptions::every`]).
    pub every: u64,
    /// Weight snapshots every this many steps, if set (≥ 1).
    pub snapshot_every: Option<u64>,
    /// Checkpoints every this many steps, if set (≥ 1).
    pub checkpoint_every: Option<u64>,
    /// Whether to draw the particle pictures at the end.
    pub plot: bool,
}

/// A checked problem, ready for an engine and [`crate::flow::run`].
#[derive(Clone, Debug)]
pub struct Problem {
    /// What is minimised.
    pub model: Model,
    /// The fixed positions drawn from μ₀.
    pub particles: Particles,
    /// Stepper and termination.
    pub run: RunOptions,
    /// Output cadences.
    pub output: OutputOptions,
    /// Which engine to use.
    pub engine: EngineChoice,
    /// The GPU adapter to use (name, kind or index), passed through to the GPU engine.
    pub device: Option<String>,
    /// The GPU engine's settings from the config.
    pub gpu: GpuSettings,
    /// The seed of the positions.
    pub seed: u64,
    /// μ₀, the law the positions were drawn from (closed-form references need it).
    pub init: Initial,
    /// Where each energy term's data came from (`None` for a term without data), so that a
    /// picture or an experiment can compare with the truth behind generated data.
    pub data: Vec<Option<DataOrigin>>,
}

/// What a config sets of the GPU engine besides the adapter (the top-level `workgroup_size` and
/// `image_exponentials`); the CPU engine ignores them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuSettings {
    /// The kernel-sum workgroup size (`None`: the engine's default).
    pub workgroup_size: Option<u32>,
    /// Where the periodic images' exponentials are computed.
    pub image_exponentials: ImageExponentials,
}

impl GpuSettings {
    /// The engine options these settings give, the others at their defaults.
    pub fn options(self) -> GpuOptions {
        let defaults = GpuOptions::default();
        GpuOptions {
            kernel_workgroup: self.workgroup_size.unwrap_or(defaults.kernel_workgroup),
            image_exponentials: self.image_exponentials,
            ..defaults
        }
    }
}

/// Where an energy term's data came from.
#[derive(Clone, Debug, PartialEq)]
pub enum DataOrigin {
    /// Read from a file (or files).
    File,
    /// Drawn from this Gaussian mixture (weights as written, not normalised).
    Mixture(Vec<Component>),
    /// The bumps regression generator.
    Bumps,
}

impl Problem {
    /// Reads and builds the config at `path`; relative data paths resolve against its directory.
    pub fn load(path: &Path) -> Result<Problem> {
        let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Config::load(path)?.build(base)
    }
}

/// A list of numbers, or one number that stands for the same value in every coordinate.
#[derive(Clone, Debug, PartialEq)]
pub enum Vector {
    /// One value for every coordinate.
    Scalar(f64),
    /// One value per coordinate.
    List(Vec<f64>),
}

impl Vector {
    /// The list for dimension `dim` (a scalar is repeated; a list is returned as written, and
    /// its length is checked by whoever uses it).
    pub fn resolve(&self, dim: usize) -> Vec<f64> {
        match self {
            Vector::Scalar(v) => vec![*v; dim],
            Vector::List(v) => v.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for Vector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vector;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number or a list of numbers")
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<Vector, E> {
                Ok(Vector::Scalar(v))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Vector, E> {
                Ok(Vector::Scalar(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Vector, E> {
                Ok(Vector::Scalar(v as f64))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Vector, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element::<f64>()? {
                    v.push(x);
                }
                Ok(Vector::List(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// `time.h`: a fixed step or `"auto"`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum StepSizeConfig {
    /// The same h every step.
    Fixed(f64),
    /// h = min(h_max, safety / max rate) each step.
    #[default]
    Auto,
}

impl<'de> Deserialize<'de> for StepSizeConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StepSizeConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number or \"auto\"")
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<StepSizeConfig, E> {
                Ok(StepSizeConfig::Fixed(v))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<StepSizeConfig, E> {
                Ok(StepSizeConfig::Fixed(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<StepSizeConfig, E> {
                Ok(StepSizeConfig::Fixed(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<StepSizeConfig, E> {
                if v == "auto" {
                    Ok(StepSizeConfig::Auto)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The whole config file. See the README's configuration reference for every key.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Seed of the positions (default 0); data generators default to `seed + 1 + term index`.
    #[serde(default)]
    pub seed: u64,
    /// cpu, gpu or auto (default).
    #[serde(default)]
    pub engine: EngineChoice,
    /// GPU adapter (name, kind or index), passed through to the GPU engine.
    #[serde(default)]
    pub device: Option<String>,
    /// The GPU engine's kernel-sum workgroup size (default 128; see `frflow bench --workgroup-size`).
    #[serde(default)]
    pub workgroup_size: Option<u32>,
    /// Where the GPU engine computes the periodic images' exponentials: fma (default) or sfu.
    #[serde(default)]
    pub image_exponentials: ImageExponentials,
    /// σ ≥ 0.
    pub sigma: f64,
    /// kl (default) or chi2.
    #[serde(default = "default_divergence")]
    pub divergence: Divergence,
    /// `[domain]`.
    pub domain: DomainConfig,
    /// `[reference]` (default: uniform).
    #[serde(default)]
    pub reference: ReferenceConfig,
    /// `[kernel]`.
    pub kernel: KernelConfig,
    /// `[[energy]]`: the terms of F (none: F = 0).
    #[serde(default)]
    pub energy: Vec<EnergyConfig>,
    /// `[particles]`.
    pub particles: ParticlesConfig,
    /// `[time]`.
    #[serde(default)]
    pub time: TimeConfig,
    /// `[output]`.
    #[serde(default)]
    pub output: OutputConfig,
}

fn default_divergence() -> Divergence {
    Divergence::Kl
}

/// Which domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainKind {
    /// The torus [0, side)^d.
    Torus,
    /// R^d.
    Euclidean,
}

/// `[domain]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// torus or euclidean.
    pub kind: DomainKind,
    /// d, 1 to 8.
    pub dim: i64,
    /// The torus side L (torus only; default 1).
    #[serde(default)]
    pub side: Option<f64>,
}

/// `[reference]`: π.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ReferenceConfig {
    /// Uniform on the torus (a struct variant, so that stray keys are rejected).
    Uniform {},
    /// N(mean, std² I).
    Gaussian {
        /// b (a scalar is broadcast).
        mean: Vector,
        /// τ > 0.
        std: f64,
    },
    /// π ∝ exp(−U_π).
    Gibbs {
        /// U_π.
        potential: PotentialConfig,
    },
}

/// A potential's parameters: `quadratic`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuadraticConfig {
    /// λ ≥ 0.
    pub strength: f64,
    /// b (a scalar is broadcast; default 0).
    #[serde(default)]
    pub center: Option<Vector>,
}

/// A potential's parameters: `double-well`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoubleWellConfig {
    /// Barrier height ≥ 0.
    pub height: f64,
    /// Well position > 0.
    pub scale: f64,
}

/// A potential's parameters: `cosine` (torus only).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosineConfig {
    /// Well depth.
    pub amplitude: f64,
    /// Wells per coordinate, ≥ 1 (default 1).
    #[serde(default = "one_i64")]
    pub frequency: i64,
}

/// A potential's parameters: `expression`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpressionConfig {
    /// U as a formula in the coordinates x0, x1, … (parsed by `exmex`: + − * / ^, sqrt, exp,
    /// log, sin, cos, tanh, abs, …), e.g. `"100 * (x0 - 0.5)^4"`.
    pub expression: String,
}

fn one_i64() -> i64 {
    1
}

fn one_f64() -> f64 {
    1.0
}

/// `reference.potential`: a potential tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PotentialConfig {
    /// strength/2 · |x − center|².
    Quadratic(QuadraticConfig),
    /// height · Σ_k ((x_k/scale)² − 1)².
    DoubleWell(DoubleWellConfig),
    /// −amplitude · Σ_k cos(2π frequency x_k / L).
    Cosine(CosineConfig),
    /// A formula in x0, x1, … (see [`ExpressionConfig`]).
    Expression(ExpressionConfig),
}

/// A potential energy term, tagged by `potential` inside its `[[energy]]` table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "potential", rename_all = "kebab-case")]
pub enum EnergyPotentialConfig {
    /// strength/2 · |x − center|².
    Quadratic(QuadraticConfig),
    /// height · Σ_k ((x_k/scale)² − 1)².
    DoubleWell(DoubleWellConfig),
    /// −amplitude · Σ_k cos(2π frequency x_k / L).
    Cosine(CosineConfig),
    /// A formula in x0, x1, … (see [`ExpressionConfig`]).
    Expression(ExpressionConfig),
}

impl From<&EnergyPotentialConfig> for PotentialConfig {
    fn from(p: &EnergyPotentialConfig) -> Self {
        match p {
            EnergyPotentialConfig::Quadratic(c) => PotentialConfig::Quadratic(c.clone()),
            EnergyPotentialConfig::DoubleWell(c) => PotentialConfig::DoubleWell(c.clone()),
            EnergyPotentialConfig::Cosine(c) => PotentialConfig::Cosine(c.clone()),
            EnergyPotentialConfig::Expression(c) => PotentialConfig::Expression(c.clone()),
        }
    }
}

/// Which data generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Generator {
    /// [`gaussian_mixture_sample`].
    Mixture,
    /// [`crate::io::data::bumps_regression`] (two-layer network only).
    Bumps,
}

/// A data set: `{ file = "…" }` or `{ generate = "mixture" | "bumps", … }`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A `.npy` or `.csv` file, relative to the config's directory.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// A generator instead of a file.
    #[serde(default)]
    pub generate: Option<Generator>,
    /// Rows to generate.
    #[serde(default)]
    pub m: Option<i64>,
    /// Mixture components (mixture only).
    #[serde(default)]
    pub components: Option<Vec<ComponentConfig>>,
    /// Additive noise std (default 0).
    #[serde(default)]
    pub noise: Option<f64>,
    /// Generator seed (default: top-level seed + 1 + term index).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// One Gaussian mixture component.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// Weight > 0 (default 1; weights are normalised).
    #[serde(default = "one_f64")]
    pub weight: f64,
    /// Mean (a scalar is broadcast).
    pub mean: Vector,
    /// Standard deviation.
    pub std: f64,
}

/// `[kernel]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelConfig {
    /// ε > 0 (at most L on the torus).
    pub epsilon: f64,
    /// A, B, C, D, D' or exact.
    pub variant: Variant,
    /// `[kernel.quadrature]`.
    #[serde(default)]
    pub quadrature: QuadratureConfig,
    /// `"none"`, `"auto"` (default) or `{ tolerance = δ, max_error = … }`.
    #[serde(default)]
    pub cutoff: CutoffConfig,
}

/// `[kernel] cutoff`: how the engines may truncate K_ε (see `engine::cells`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum CutoffConfig {
    /// `"none"` or `"auto"`.
    Named(CutoffName),
    /// `{ tolerance = δ, max_error = … }`.
    Tolerance {
        /// δ in (0, 1): pairs with K_ε < δ·K_ε(0) are dropped.
        tolerance: f64,
        /// The largest relative truncation bound allowed (default 1e-4).
        #[serde(default = "default_max_error")]
        max_error: f64,
    },
}

/// `"auto"`.
impl Default for CutoffConfig {
    fn default() -> Self {
        CutoffConfig::Named(CutoffName::Auto)
    }
}

/// The named cutoffs.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CutoffName {
    /// Every pair.
    None,
    /// Cells where they save work.
    Auto,
}

fn default_max_error() -> f64 {
    crate::engine::cells::Cutoff::DEFAULT_MAX_ERROR
}

impl CutoffConfig {
    fn build(&self) -> Result<crate::engine::cells::Cutoff> {
        use crate::engine::cells::Cutoff;
        let c = match self {
            CutoffConfig::Named(CutoffName::None) => Cutoff::None,
            CutoffConfig::Named(CutoffName::Auto) => Cutoff::Auto,
            CutoffConfig::Tolerance { tolerance, max_error } => {
                Cutoff::Tolerance { tolerance: *tolerance, max_error: *max_error }
            }
        };
        c.validate("kernel.cutoff")?;
        Ok(c)
    }
}

/// `[kernel.quadrature]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuadratureConfig {
    /// Gauss–Hermite order per coordinate for d ≤ 3 (1 to 32; default 5).
    #[serde(default = "default_order")]
    pub order: i64,
    /// Normal draws for d > 3 (1 to 4096; default 64).
    #[serde(default = "default_samples")]
    pub samples: i64,
    /// Seed of the draws.
    #[serde(default = "default_quadrature_seed")]
    pub seed: u64,
}

fn default_order() -> i64 {
    QuadratureSpec::default().order as i64
}

fn default_samples() -> i64 {
    QuadratureSpec::default().samples as i64
}

fn default_quadrature_seed() -> u64 {
    QuadratureSpec::default().seed
}

impl Default for QuadratureConfig {
    fn default() -> Self {
        QuadratureConfig { order: default_order(), samples: default_samples(), seed: default_quadrature_seed() }
    }
}

/// `[particles]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticlesConfig {
    /// N, 1 to [`MAX_PARTICLES`].
    pub n: i64,
    /// μ₀ (default: uniform).
    #[serde(default)]
    pub init: InitConfig,
}

/// `particles.init`: μ₀, tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum InitConfig {
    /// Uniform on the torus, or on [low, high]^d in R^d.
    Uniform {
        /// Lower corner (R^d only, required there).
        #[serde(default)]
        low: Option<f64>,
        /// Upper corner (R^d only, required there).
        #[serde(default)]
        high: Option<f64>,
    },
    /// N(mean, std² I).
    Gaussian {
        /// Mean (a scalar is broadcast).
        mean: Vector,
        /// std > 0.
        std: f64,
    },
    /// A Gaussian mixture.
    Mixture {
        /// The components.
        components: Vec<ComponentConfig>,
    },
}

impl Default for InitConfig {
    fn default() -> Self {
        InitConfig::Uniform { low: None, high: None }
    }
}

/// `[time]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// euler (default) or exponential.
    #[serde(default = "default_scheme")]
    pub scheme: Scheme,
    /// A fixed step > 0 or "auto" (default).
    #[serde(default)]
    pub h: StepSizeConfig,
    /// Fraction of the largest stable step with h = "auto", in (0, 1) (default 0.5).
    #[serde(default = "default_safety")]
    pub safety: f64,
    /// Largest step with h = "auto" (default 0.1).
    #[serde(default = "default_h_max")]
    pub h_max: f64,
    /// Stop after this many steps.
    #[serde(default)]
    pub steps: Option<i64>,
    /// Stop at this flow time.
    #[serde(default)]
    pub final_time: Option<f64>,
    /// Stop once max |a_i| < tolerance.
    #[serde(default)]
    pub tolerance: Option<f64>,
}

fn default_scheme() -> Scheme {
    Scheme::Euler
}

fn default_safety() -> f64 {
    crate::stepper::DEFAULT_SAFETY
}

fn default_h_max() -> f64 {
    crate::stepper::DEFAULT_H_MAX
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            scheme: default_scheme(),
            h: StepSizeConfig::Auto,
            safety: default_safety(),
            h_max: default_h_max(),
            steps: None,
            final_time: None,
            tolerance: None,
        }
    }
}

/// `[output]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Diagnostics cadence (default 10).
    #[serde(default = "default_every")]
    pub every: i64,
    /// Snapshot cadence.
    #[serde(default)]
    pub snapshot_every: Option<i64>,
    /// Checkpoint cadence.
    #[serde(default)]
    pub checkpoint_every: Option<i64>,
    /// Draw pictures at the end (default true).
    #[serde(default = "default_plot")]
    pub plot: bool,
}

fn default_every() -> i64 {
    10
}

fn default_plot() -> bool {
    true
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { every: default_every(), snapshot_every: None, checkpoint_every: None, plot: default_plot() }
    }
}

/// How a non-finite float is shown: as TOML writes it.
fn show_float(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        v.to_string()
    }
}

/// toml's message, without the trailing newline and with its middle cut when a huge line makes it long.
fn shorten(message: &str) -> String {
    const KEEP: usize = 1000;
    let m = message.trim_end();
    let chars: Vec<char> = m.chars().collect();
    if chars.len() <= 2 * KEEP {
        return m.to_string();
    }
    let head: String = chars[..KEEP].iter().collect();
    let tail: String = chars[chars.len() - KEEP..].iter().collect();
    format!("{head} … {tail}")
}

/// The TOML parser's message for `text`, shortened, with the line of the deepest nesting added when
/// the parser gives up at its recursion limit without saying where.
pub(crate) fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.to_string();
    if message.contains("recursion limit") && e.span().is_none() {
        // Count the dotted parts of each line's key or table header (quotes are rare enough here
        // that a plain count points at the right line).
        let deepest = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                let l = l.trim_start();
                let key = l.split('=').next().unwrap_or("");
                (i + 1, key.matches('.').count() + key.matches('[').count() + l.matches('{').count())
            })
            .max_by_key(|&(_, depth)| depth);
        if let Some((line, depth)) = deepest {
            return format!(
                "tables nested too deeply (recursion limit): the deepest is at line {line}, about {depth} levels; \
                 no frflow key is nested more than a few levels"
            );
        }
    }
    shorten(&message)
}

/// Rejects `nan` and `inf` anywhere in a TOML document (a config or a sweep file), naming the
/// dotted key.
pub(crate) fn check_finite(path: &str, value: &toml::Value) -> Result<()> {
    match value {
        toml::Value::Float(f) if !f.is_finite() => {
            Err(Error::invalid(path, show_float(*f), "a finite number (nan and inf are not allowed)"))
        }
        toml::Value::Table(t) => {
            for (k, v) in t {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                check_finite(&p, v)?;
            }
            Ok(())
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                check_finite(&format!("{path}[{i}]"), v)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// An integer key in `min..=max`.
fn integer(field: &str, v: i64, min: u64, max: u64) -> Result<u64> {
    match u64::try_from(v) {
        Ok(u) if (min..=max).contains(&u) => Ok(u),
        _ if max == u64::MAX => Err(Error::invalid(field, v, format!("an integer ≥ {min}"))),
        _ => Err(Error::invalid(field, v, format!("an integer from {min} to {max}"))),
    }
}

/// Prefixes the field of an [`Error::Invalid`] with the key it came from.
pub(crate) fn under(prefix: &str, e: Error) -> Error {
    match e {
        Error::Invalid { field, value, allowed } => {
            Error::Invalid { field: format!("{prefix}.{field}"), value, allowed }
        }
        e => e,
    }
}

impl Config {
    /// Parses TOML text; `origin` names it in messages (a path, or e.g. `<string>`).
    ///
    /// Checks the syntax, the types, unknown keys and non-finite numbers; [`Config::build`]
    /// checks everything else.
    pub fn from_str(text: &str, origin: &str) -> Result<Config> {
        let toml_error =
            |e: toml::de::Error| Error::Config { path: origin.to_string(), message: toml_message(text, &e) };
        let config: Config = toml::from_str(text).map_err(toml_error)?;
        let table: toml::Table = toml::from_str(text).map_err(toml_error)?;
        check_finite("", &toml::Value::Table(table))?;
        Ok(config)
    }

    /// Reads and parses the file at `path` (a regular file of at most
    /// [`MAX_CONFIG_BYTES`](crate::io::guard::MAX_CONFIG_BYTES)).
    pub fn load(path: &Path) -> Result<Config> {
        let text = crate::io::guard::read_config_text(path)?;
        Config::from_str(&text, &path.display().to_string())
    }

    /// The data files the energies read, with the key that names each (e.g. `energy[0].sample.file`),
    /// relative to the config's directory as written.
    pub fn data_files(&self) -> Vec<(String, PathBuf)> {
        let mut files = Vec::new();
        for (i, e) in self.energy.iter().enumerate() {
            let mut add = |key: &str, d: Option<&DataConfig>| {
                if let Some(f) = d.and_then(|d| d.file.as_ref()) {
                    files.push((format!("energy[{i}].{key}.file"), f.clone()));
                }
            };
            for (key, data) in e.data() {
                add(key, Some(data));
            }
        }
        files
    }

    /// Checks every value and builds the problem: samples the positions, loads or generates the
    /// energies' data (relative file paths resolve against `base_dir`).
    pub fn build(&self, base_dir: &Path) -> Result<Problem> {
        let space = self.domain.build()?;
        let dim = space.dim;
        let reference = self.reference.build(dim)?;
        let energy = self
            .energy
            .iter()
            .enumerate()
            .map(|(i, e)| e.build(&format!("energy[{i}]"), &space, base_dir, self.seed.wrapping_add(1 + i as u64)))
            .collect::<Result<Vec<_>>>()?;
        let quadrature = self.kernel.quadrature.build()?;
        let model = ModelSpec {
            space,
            reference,
            divergence: self.divergence,
            sigma: self.sigma,
            epsilon: self.kernel.epsilon,
            variant: self.kernel.variant,
            energy,
            quadrature,
        }
        .build()?;
        let model = Model { cutoff: self.kernel.cutoff.build()?, ..model };

        let init = self.particles.init.build(&space)?;
        let n = integer("particles.n", self.particles.n, 1, MAX_PARTICLES as u64)? as usize;
        let particles = Particles::sample(space, &init, n, self.seed)?;
        if let Some(v) = particles.positions.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid("particles.init", v, "parameters whose draws are finite numbers"));
        }
        if model.variant == Variant::Exact && model.has_divergence() {
            let ok = particles.log_initial_density.as_ref().is_some_and(|l| l.iter().all(|v| v.is_finite()));
            if !ok {
                return Err(Error::invalid(
                    "kernel.variant",
                    "exact",
                    "a kernelized variant (A, B, C, D, D'), or a μ₀ whose density is finite at every particle \
                     (the exact oracle needs μ₀'s density)",
                ));
            }
        }

        let t = &self.time;
        // safety and h_max are checked even when h is fixed, so a typo never waits for a switch to "auto".
        Stepper::new(t.scheme, StepSize::Auto { safety: t.safety, h_max: t.h_max })?;
        let step_size = match t.h {
            StepSizeConfig::Fixed(h) => StepSize::Fixed(h),
            StepSizeConfig::Auto => StepSize::Auto { safety: t.safety, h_max: t.h_max },
        };
        let stepper = Stepper::new(t.scheme, step_size)?;
        let o = &self.output;
        let every = integer("output.every", o.every, 1, u64::MAX)?;
        let run = RunOptions {
            stepper,
            max_steps: t.steps.map(|s| integer("time.steps", s, 0, u64::MAX)).transpose()?,
            final_time: t.final_time,
            tolerance: t.tolerance,
            every,
        };
        run.validate()?;
        let output = OutputOptions {
            every,
            snapshot_every: o.snapshot_every.map(|k| integer("output.snapshot_every", k, 1, u64::MAX)).transpose()?,
            checkpoint_every: o
                .checkpoint_every
                .map(|k| integer("output.checkpoint_every", k, 1, u64::MAX))
                .transpose()?,
            plot: o.plot,
        };
        Ok(Problem {
            model,
            particles,
            run,
            output,
            engine: self.engine,
            device: self.device.clone(),
            gpu: GpuSettings { workgroup_size: self.workgroup_size, image_exponentials: self.image_exponentials },
            seed: self.seed,
            init,
            data: self.energy.iter().map(|e| e.origin(dim)).collect(),
        })
    }
}

impl DomainConfig {
    fn build(&self) -> Result<Space> {
        let dim = integer("domain.dim", self.dim, 1, MAX_DIM as u64)? as usize;
        let domain = match (self.kind, self.side) {
            (DomainKind::Torus, side) => Domain::Torus { side: side.unwrap_or(1.0) },
            (DomainKind::Euclidean, None) => Domain::Euclidean,
            (DomainKind::Euclidean, Some(side)) => {
                return Err(Error::invalid(
                    "domain.side",
                    show_float(side),
                    "no side on R^d (only for kind = \"torus\")",
                ));
            }
        };
        Space::new(dim, domain)
    }
}

impl Default for ReferenceConfig {
    fn default() -> Self {
        ReferenceConfig::Uniform {}
    }
}

impl ReferenceConfig {
    fn build(&self, dim: usize) -> Result<Reference> {
        Ok(match self {
            ReferenceConfig::Uniform {} => Reference::Uniform,
            ReferenceConfig::Gaussian { mean, std } => Reference::Gaussian { mean: mean.resolve(dim), std: *std },
            ReferenceConfig::Gibbs { potential } => Reference::Gibbs(potential.build(dim, "reference.potential")?),
        })
    }
}

impl PotentialConfig {
    pub(crate) fn build(&self, dim: usize, field: &str) -> Result<Potential> {
        Ok(match self {
            PotentialConfig::Quadratic(c) => Potential::Quadratic {
                strength: c.strength,
                center: c.center.as_ref().map_or_else(|| vec![0.0; dim], |v| v.resolve(dim)),
            },
            PotentialConfig::DoubleWell(c) => Potential::DoubleWell { height: c.height, scale: c.scale },
            PotentialConfig::Cosine(c) => {
                let frequency = u32::try_from(c.frequency).ok().filter(|f| *f >= 1).ok_or_else(|| {
                    Error::invalid(format!("{field}.frequency"), c.frequency, "an integer from 1 to 4294967295")
                })?;
                Potential::Cosine { amplitude: c.amplitude, frequency }
            }
            PotentialConfig::Expression(c) => {
                Potential::Custom(CustomPotential::expression(&c.expression, dim, &format!("{field}.expression"))?)
            }
        })
    }
}

impl DataConfig {
    /// Where a checked data set comes from; mixture means have `columns` entries.
    pub(crate) fn origin(&self, columns: usize) -> DataOrigin {
        match (self.generate, &self.components) {
            (Some(Generator::Mixture), Some(cs)) => DataOrigin::Mixture(components(cs, columns)),
            (Some(Generator::Bumps), _) => DataOrigin::Bumps,
            _ => DataOrigin::File,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match (&self.file, self.generate) {
            (Some(f), Some(g)) => format!("file = {:?} and generate = {g:?}", f.display().to_string()),
            (Some(f), None) => format!("file = {:?}", f.display().to_string()),
            (None, Some(g)) => format!("generate = {:?}", format!("{g:?}").to_lowercase()),
            (None, None) => "neither file nor generate".into(),
        }
    }

    /// Rejects the keys that do not belong to this kind of source.
    pub(crate) fn only(&self, field: &str, allowed: &[&str]) -> Result<()> {
        let present = [
            ("file", self.file.is_some()),
            ("generate", self.generate.is_some()),
            ("m", self.m.is_some()),
            ("components", self.components.is_some()),
            ("noise", self.noise.is_some()),
            ("seed", self.seed.is_some()),
        ];
        for (key, here) in present {
            if here && !allowed.contains(&key) {
                return Err(Error::invalid(
                    format!("{field}.{key}"),
                    format!("{key} with {}", self.describe()),
                    format!("only the keys {} here", allowed.join(", ")),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn rows(&self, field: &str) -> Result<usize> {
        match self.m {
            Some(m) => Ok(integer(&format!("{field}.m"), m, 1, MAX_GENERATED_ROWS as u64)? as usize),
            None => Err(Error::invalid(format!("{field}.m"), "missing", "the number of rows to generate")),
        }
    }

    /// A table read from `file`, with `columns` columns.
    pub(crate) fn file_points(&self, field: &str, columns: usize, base_dir: &Path) -> Result<Points> {
        self.only(field, &["file"])?;
        let Some(file) = &self.file else {
            return Err(Error::invalid(field, self.describe(), "{ file = \"….npy\" } or { file = \"….csv\" }"));
        };
        load_points(&base_dir.join(file), Some(columns)).map_err(|e| match e {
            Error::Data { path, message } => Error::invalid(
                format!("{field}.file"),
                file.display(),
                format!("a readable .npy or .csv file with {columns} columns; {path}: {message}"),
            ),
            e => e,
        })
    }

    /// A table of `columns` columns from a file or the mixture generator.
    pub(crate) fn points(&self, field: &str, columns: usize, base_dir: &Path, seed: u64) -> Result<Points> {
        match (&self.file, self.generate) {
            (Some(_), None) => self.file_points(field, columns, base_dir),
            (None, Some(Generator::Mixture)) => {
                self.only(field, &["generate", "m", "components", "noise", "seed"])?;
                let m = self.rows(field)?;
                let Some(cs) = &self.components else {
                    return Err(Error::invalid(format!("{field}.components"), "missing", "at least one component"));
                };
                let comps = components(cs, columns);
                let p = gaussian_mixture_sample(&comps, m, self.noise.unwrap_or(0.0), self.seed.unwrap_or(seed))
                    .map_err(|e| under(field, e))?;
                if p.dim != columns {
                    return Err(Error::invalid(
                        format!("{field}.components[0].mean"),
                        format!("{:?}", comps[0].mean),
                        format!("a list of {columns} numbers (one per coordinate) or a scalar"),
                    ));
                }
                Ok(p)
            }
            _ => Err(Error::invalid(
                field,
                self.describe(),
                "{ file = \"….npy\" | \"….csv\" } or { generate = \"mixture\", m = …, components = [ … ] }",
            )),
        }
    }
}

fn components(cs: &[ComponentConfig], dim: usize) -> Vec<Component> {
    cs.iter().map(|c| Component { weight: c.weight, mean: c.mean.resolve(dim), std: c.std }).collect()
}

impl QuadratureConfig {
    fn build(&self) -> Result<QuadratureSpec> {
        // Quadrature::new checks the ranges that matter for the dimension; here only the sign.
        let order = integer("kernel.quadrature.order", self.order, 1, 32)? as usize;
        let samples = integer("kernel.quadrature.samples", self.samples, 1, 4096)? as usize;
        Ok(QuadratureSpec { order, samples, seed: self.seed })
    }
}

impl InitConfig {
    fn build(&self, space: &Space) -> Result<Initial> {
        let dim = space.dim;
        Ok(match self {
            InitConfig::Uniform { low, high } => match space.domain {
                Domain::Torus { .. } => {
                    if let Some((key, v)) = low.map(|v| ("low", v)).or(high.map(|v| ("high", v))) {
                        return Err(Error::invalid(
                            format!("particles.init.{key}"),
                            show_float(v),
                            "no low/high on the torus (μ₀ is uniform on [0, L)^d there)",
                        ));
                    }
                    Initial::Uniform { low: 0.0, high: space.side().unwrap_or(1.0) }
                }
                Domain::Euclidean => {
                    let (Some(low), Some(high)) = (low, high) else {
                        let key = if low.is_none() { "low" } else { "high" };
                        return Err(Error::invalid(
                            format!("particles.init.{key}"),
                            "missing",
                            "a finite number (required on R^d: μ₀ is uniform on [low, high]^d)",
                        ));
                    };
                    Initial::Uniform { low: *low, high: *high }
                }
            },
            InitConfig::Gaussian { mean, std } => Initial::Gaussian { mean: mean.resolve(dim), std: *std },
            InitConfig::Mixture { components: cs } => Initial::Mixture(components(cs, dim)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Energy, Mmd};

    const BASE: &str = r#"
        seed = 2
        sigma = 0.5
        [domain]
        kind = "torus"
        dim = 2
        [kernel]
        epsilon = 0.1
        variant = "C"
        [[energy]]
        kind = "potential"
        potential = "cosine"
        amplitude = 1.0
        frequency = 2
        [particles]
        n = 32
        [time]
        steps = 10
    "#;

    fn build(text: &str) -> Result<Problem> {
        Config::from_str(text, "<test>")?.build(Path::new("."))
    }

    #[test]
    fn config_defaults_fill_what_is_not_written() {
        let p = build(BASE).unwrap();
        assert_eq!(p.engine, EngineChoice::Auto);
        assert_eq!(p.model.reference, Reference::Uniform);
        assert_eq!(p.model.space.side(), Some(1.0));
        assert_eq!(p.run.stepper.step_size, StepSize::Auto { safety: 0.5, h_max: 0.1 });
        assert_eq!(p.run.stepper.scheme, Scheme::Euler);
        assert_eq!(p.output, OutputOptions { every: 10, snapshot_every: None, checkpoint_every: None, plot: true });
        assert_eq!(p.run.max_steps, Some(10));
        assert_eq!(p.particles.len(), 32);
        assert_eq!(p.model.energy, vec![Energy::Potential(Potential::Cosine { amplitude: 1.0, frequency: 2 })]);
    }

    #[test]
    fn config_scalars_broadcast_and_lists_must_match_the_dimension() {
        let text = BASE.replace(
            "[kernel]",
            "[reference]\nkind = \"gibbs\"\npotential = { kind = \"quadratic\", strength = 2.0, center = 0.5 }\n[kernel]",
        );
        let p = build(&text).unwrap();
        assert_eq!(p.model.reference, Reference::Gibbs(Potential::Quadratic { strength: 2.0, center: vec![0.5, 0.5] }));
        let bad = text.replace("center = 0.5", "center = [0.5]");
        match build(&bad).unwrap_err() {
            Error::Invalid { field, .. } => assert_eq!(field, "reference.potential.center"),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn config_nan_is_rejected_with_its_dotted_key() {
        let text = BASE.replace("amplitude = 1.0", "amplitude = nan");
        match build(&text).unwrap_err() {
            Error::Invalid { field, value, .. } => {
                assert_eq!((field.as_str(), value.as_str()), ("energy[0].amplitude", "nan"))
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn config_generated_data_is_seeded_by_the_term_index() {
        let text = BASE.replace(
            "[particles]",
            "[[energy]]\nkind = \"mmd\"\nwidth = 0.2\nsample = { generate = \"mixture\", m = 50, components = [{ mean = 0.5, std = 0.1 }] }\n[particles]",
        );
        let a = build(&text).unwrap();
        let Energy::Mmd(Mmd { sample, .. }) = &a.model.energy[1] else { panic!() };
        let expected =
            gaussian_mixture_sample(&[Component { weight: 1.0, mean: vec![0.5, 0.5], std: 0.1 }], 50, 0.0, 2 + 1 + 1)
                .unwrap();
        assert_eq!(**sample, expected);
    }

    /// The problem keeps μ₀ and where each term's data came from, so that later layers (the
    /// closed-form references, the pictures' true curves) need not read the config again.
    #[test]
    fn problems_keep_the_initial_law_and_the_origin_of_their_data() {
        let mmd = "[[energy]]\nkind = \"mmd\"\nwidth = 0.2\nsample = { generate = \"mixture\", m = 50, \
                   components = [{ weight = 2.0, mean = 0.5, std = 0.1 }] }\n[particles]";
        let p = build(&BASE.replace("[particles]", mmd)).unwrap();
        assert_eq!(p.init, Initial::Uniform { low: 0.0, high: 1.0 });
        let truth = Component { weight: 2.0, mean: vec![0.5, 0.5], std: 0.1 };
        assert_eq!(p.data, vec![None, Some(DataOrigin::Mixture(vec![truth]))]);
        let net = build(include_str!("../examples/two_layer_net.toml")).unwrap();
        assert_eq!(net.data, vec![Some(DataOrigin::Bumps)]);
        assert_eq!(net.init, Initial::Uniform { low: -6.0, high: 6.0 });
    }
}
