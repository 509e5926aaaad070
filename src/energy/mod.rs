//! The terms of F (SPEC §5), one module each: a term's spec (what the user writes), its
//! config (what `[[energy]]` deserializes into), its CPU part (f64) and its GPU part (host code
//! and the shaders it names) live together, the way vello keeps a stage beside its CPU twin.
//!
//! A term is registered in this file only: a variant of [`Energy`] and its arm in
//! `Energy::term`, and, when configs can name it, a variant of [`EnergyConfig`] and its arm in
//! [`EnergyConfig::build`] (see the README's "Adding an energy"). Everything else (the engines,
//! the bench's pair count, the shader checks) reaches it through the crate's `Term` trait.
//!
//! The engines compose every term the same way. Per target t (the particles in a step, other
//! points in `rates_at`) they keep (δF/δm(t), f(t)) with F(μᴺ) = Σ_i w_i f(X_i) plus each term's
//! part that is not a weighted sum over the particles (data terms, constants). The position-only
//! potential U starts the total; each other term adds to it through [`energy_accumulate`] (its
//! shader twin `energy_accumulate.wgsl`), from one or two per-target values its own passes
//! computed.

mod custom;
mod interaction;
mod mmd;
mod network;
mod npmle;
mod pair;
mod potential;

pub(crate) use custom::upload_host_term;
pub use custom::{CustomTerm, EnergyTerm};
pub use interaction::Interaction;
pub use mmd::{Mmd, MmdConfig};
pub use network::{TwoLayerNet, TwoLayerNetConfig, net_backward, net_forward, net_residuals};
pub use npmle::{Npmle, NpmleConfig, npmle_coefficients};
pub use pair::{PairKernel, pair_sum};

use crate::config::{DataConfig, DataOrigin, EnergyPotentialConfig};
use crate::engine::cells::CellGrid;
use crate::engine::cpu::KernelCells;
use crate::engine::gpu::build::{Builder, Pass};
use crate::engine::gpu::kernels::{Bind, ELEMENT_WG, Header, Shader};
use crate::error::{Error, Result};
use crate::model::{Gaussian, Model, Potential, Space};
use std::path::Path;

/// A table of M points in R^k, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Points {
    /// Number of columns k.
    pub dim: usize,
    /// M × k values.
    pub values: Vec<f64>,
}

impl Points {
    /// Number of rows M.
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row k.
    pub fn row(&self, k: usize) -> &[f64] {
        &self.values[k * self.dim..(k + 1) * self.dim]
    }

    /// Checks that the table has `cols` columns, at least one row and finite values; `field`
    /// names it in the error.
    pub(crate) fn check(&self, field: &str, cols: usize) -> Result<()> {
        if self.dim != cols || self.is_empty() || self.values.len() % cols != 0 {
            return Err(Error::invalid(
                field,
                format!("{} values with {} columns", self.values.len(), self.dim),
                format!("a non-empty table with {cols} columns"),
            ));
        }
        if let Some(v) = self.values.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid(field, v, "finite numbers only"));
        }
        Ok(())
    }
}

/// One term of F; the model's F is the sum of its terms. Each variant is a type of its own
/// module.
#[derive(Clone, Debug, PartialEq)]
pub enum Energy {
    /// ∫ U dm.
    Potential(Potential),
    /// ½ ∬ W(x − y) m(dx) m(dy) with a Gaussian W (see [`Interaction`]).
    Interaction(Interaction),
    /// ½ ‖K m − K ν‖² to a sample ν (see [`Mmd`]).
    Mmd(Mmd),
    /// The mean-field two-layer network's squared loss (see [`TwoLayerNet`]).
    TwoLayerNet(TwoLayerNet),
    /// The Gaussian-mixture NPMLE's negative log-likelihood (see [`Npmle`]).
    Npmle(Npmle),
    /// ½ ∬ W(x, y) m(dx) m(dy) with the user's W (see [`PairKernel`]).
    Pair(PairKernel),
    /// The user's whole term (see [`EnergyTerm`]).
    Custom(CustomTerm),
}

impl Energy {
    /// The term's implementation: the registration of each variant.
    pub(crate) fn term(&self) -> &dyn Term {
        match self {
            Energy::Potential(t) => t,
            Energy::Interaction(t) => t,
            Energy::Mmd(t) => t,
            Energy::TwoLayerNet(t) => t,
            Energy::Npmle(t) => t,
            Energy::Pair(t) => t,
            Energy::Custom(t) => t,
        }
    }

    /// Checks the term against the space; `field` is its config key, e.g. `energy[0]`.
    pub fn validate(&self, space: &Space, field: &str) -> Result<()> {
        self.term().validate(space, field)
    }

    /// A short description for messages and reports, e.g. `mmd (width 0.2, M = 500)`.
    pub fn describe(&self) -> String {
        self.term().describe()
    }

    /// Kernel (or neuron) evaluations one evaluation of δF/δm at N particles costs, for the
    /// bench's pairs per second (0 for terms without pairwise work).
    pub fn pairs_per_evaluation(&self, n: usize) -> f64 {
        self.term().pairs_per_evaluation(n)
    }
}

/// One `[[energy]]` term, tagged by `kind`: each variant deserializes into its term's own
/// config type and builds the term with the term's one validation.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EnergyConfig {
    /// ∫ U dm, the potential tagged by `potential`.
    Potential(EnergyPotentialConfig),
    /// See [`Interaction`] (the term itself: it has no data to load).
    Interaction(Interaction),
    /// See [`Mmd`].
    Mmd(MmdConfig),
    /// See [`TwoLayerNet`].
    TwoLayerNet(TwoLayerNetConfig),
    /// See [`Npmle`].
    Npmle(NpmleConfig),
}

/// Where a term's data sets resolve: relative files against `base_dir`, generators from `seed`.
pub(crate) struct DataSource<'a> {
    pub base_dir: &'a Path,
    pub seed: u64,
}

/// A term's config: builds the checked term and says where its data came from.
pub(crate) trait TermConfig {
    /// The term, loaded and validated; `field` is its key (`energy[0]`).
    fn build(&self, field: &str, space: &Space, data: &DataSource) -> Result<Energy>;

    /// Its data sets with their keys (`sample`, `observations`, …), for the list of files a run
    /// reads.
    fn data(&self) -> Vec<(&'static str, &DataConfig)> {
        Vec::new()
    }

    /// The same data sets, to edit (e.g. to pin their seeds).
    fn data_mut(&mut self) -> Vec<&mut DataConfig> {
        Vec::new()
    }

    /// Where its data came from, if it has data.
    fn origin(&self, _dim: usize) -> Option<DataOrigin> {
        None
    }
}

impl EnergyConfig {
    /// The term's config: the registration of each variant.
    fn config(&self) -> &dyn TermConfig {
        match self {
            EnergyConfig::Potential(c) => c,
            EnergyConfig::Interaction(c) => c,
            EnergyConfig::Mmd(c) => c,
            EnergyConfig::TwoLayerNet(c) => c,
            EnergyConfig::Npmle(c) => c,
        }
    }

    /// [`EnergyConfig::config`], to edit.
    fn config_mut(&mut self) -> &mut dyn TermConfig {
        match self {
            EnergyConfig::Potential(c) => c,
            EnergyConfig::Interaction(c) => c,
            EnergyConfig::Mmd(c) => c,
            EnergyConfig::TwoLayerNet(c) => c,
            EnergyConfig::Npmle(c) => c,
        }
    }

    /// Loads the term's data and builds the checked term; `field` is its key (`energy[0]`).
    pub fn build(&self, field: &str, space: &Space, base_dir: &Path, seed: u64) -> Result<Energy> {
        self.config().build(field, space, &DataSource { base_dir, seed })
    }

    /// The term's data sets with their keys (`sample`, …).
    pub fn data(&self) -> Vec<(&'static str, &DataConfig)> {
        self.config().data()
    }

    /// The term's data sets, to edit.
    pub fn data_mut(&mut self) -> Vec<&mut DataConfig> {
        self.config_mut().data_mut()
    }

    /// Where the term's data came from, if it has data.
    pub fn origin(&self, dim: usize) -> Option<DataOrigin> {
        self.config().origin(dim)
    }
}

/// What a term of F implements. The CPU part is required; the GPU part is optional only for
/// terms the GPU engine evaluates on the host (a user's [`EnergyTerm`]).
pub(crate) trait Term {
    /// Checks the term's values against the space; `field` names it (`energy[0]`).
    fn validate(&self, space: &Space, field: &str) -> Result<()>;

    /// A short description (kind and parameters).
    fn describe(&self) -> String;

    /// Kernel evaluations per evaluation of δF/δm at N particles (see
    /// [`Energy::pairs_per_evaluation`]).
    fn pairs_per_evaluation(&self, _n: usize) -> f64 {
        0.0
    }

    /// U(x) when the term is position-only (it is then folded into the fixed per-particle values
    /// and has no CPU or GPU part).
    fn position_only(&self, _space: &Space, _x: &[f64]) -> Option<f64> {
        None
    }

    /// The CPU engine's part for the particles at `positions` (None: position-only).
    fn cpu(&self, model: &Model, positions: &[f64]) -> Result<Option<Box<dyn CpuTerm>>>;

    /// The GPU engine's part, its data uploaded (None: position-only).
    fn gpu(&self, setup: &mut GpuSetup) -> Result<Option<Box<dyn GpuTerm>>>;
}

/// What a term's CPU part is given at one evaluation.
pub(crate) struct CpuEval<'a> {
    pub space: &'a Space,
    /// The particles' positions (N × d), weights and log-weights.
    pub positions: &'a [f64],
    pub weights: &'a [f64],
    pub log_weights: &'a [f64],
    /// The targets (T × d): the particles themselves in a step, other points in `rates_at`.
    pub targets: &'a [f64],
    /// The term's position-only values at the targets ([`CpuTerm::fixed_at`]).
    pub fixed: Option<&'a [f64]>,
    /// log Σ_j exp(c_j) K(t, X_j) at the targets for coefficients c over the particles: the
    /// engine's kept matrix, cells or streamed sum for that kernel.
    pub particle_sum: &'a (dyn Fn(&Gaussian, &[f64]) -> Vec<f64> + Sync),
}

/// A term's CPU part (f64), built once for the fixed positions.
pub(crate) trait CpuTerm: Send + Sync {
    /// The kernel whose particle × particle sums the term takes through
    /// [`CpuEval::particle_sum`], so that the engine keeps a matrix or cells for it.
    fn kernel(&self) -> Option<Gaussian> {
        None
    }

    /// Values at `points` that depend only on where they are (computed once per set of points).
    fn fixed_at(&self, _space: &Space, _points: &[f64]) -> Option<Vec<f64>> {
        None
    }

    /// Adds the term's δF/δm and f at every target to `energy` and returns its part of F that is
    /// not a weighted sum over the particles.
    fn add(&self, e: &CpuEval, energy: &mut [(f64, f64)]) -> Result<f64>;

    /// The term's own cutoff sums, which report their truncation bounds.
    fn cells(&self) -> Option<&KernelCells> {
        None
    }
}

/// What a term's GPU part is built from, and the engine-wide slots it takes.
pub(crate) struct GpuSetup<'a, 'b> {
    pub b: &'a Builder<'b>,
    pub model: &'a Model,
    /// The particles (N × d).
    pub positions: &'a [f64],
    /// Other points the term's layouts must hold (`rates_at`'s, given at construction).
    pub extra: &'a [f64],
    pub header: &'a Header,
    /// A running control block, for passes run at construction.
    pub control: &'a wgpu::Buffer,
    /// Truncation slots taken so far (two u32 each: bound bits, target).
    pub slots: usize,
    /// Entries of the data-term buffer taken so far.
    pub data_entries: usize,
    /// F's constant parts, summed on the host in f64.
    pub f_const: f64,
}

impl GpuSetup<'_, '_> {
    /// Takes `count` truncation slots and returns the first.
    pub fn take_slots(&mut self, count: usize) -> u32 {
        let first = self.slots as u32;
        self.slots += count;
        first
    }

    /// Takes `count` entries of the data-term buffer and returns the first.
    pub fn take_data(&mut self, count: usize) -> usize {
        let first = self.data_entries;
        self.data_entries += count;
        first
    }
}

/// The buffers of one evaluation of every term, at the particles or at `rates_at`'s points.
#[derive(Clone, Copy)]
pub(crate) struct GpuEval<'a, 'b> {
    pub b: &'a Builder<'b>,
    pub header: &'a Header,
    /// Targets: N at the particles, T at other points.
    pub targets: usize,
    /// The particles N (the sources of the particle sums).
    pub n: usize,
    /// The particles' log-weights.
    pub lw: &'a wgpu::Buffer,
    /// Scratch per target: a term's kernel sums.
    pub l1: &'a wgpu::Buffer,
    pub l2: &'a wgpu::Buffer,
    /// Zeros per target.
    pub zeros: &'a wgpu::Buffer,
    /// Per target the fixed values (U first) and the (δF, f) total.
    pub fixed: &'a wgpu::Buffer,
    pub energy: &'a wgpu::Buffer,
    /// F's per-data-point terms.
    pub data_f: &'a wgpu::Buffer,
    /// The truncation slots of the cell sums.
    pub truncation: &'a wgpu::Buffer,
    pub control: &'a wgpu::Buffer,
    /// Whether this term is the first to add (it starts from U).
    pub first: bool,
}

impl GpuEval<'_, '_> {
    /// The `energy_accumulate` pass that adds a term from its per-target values `l1`, `l2`.
    pub fn accumulate(&self, term: Accumulate, l1: &wgpu::Buffer, l2: &wgpu::Buffer) -> Result<Pass> {
        let (kind, strength) = match term {
            Accumulate::Interaction { strength } => (0, strength),
            Accumulate::Mmd => (1, 1.0),
            Accumulate::Linear => (2, 1.0),
            Accumulate::Npmle => (3, 1.0),
        };
        let params = AccumulateParams {
            n: self.targets as u32,
            kind,
            first: u32::from(self.first),
            strength: strength as f32,
            ..Default::default()
        };
        let bufs = [self.fixed, l1, l2, self.energy, self.control];
        self.b.pass(&ENERGY_ACCUMULATE, self.header, &params, &bufs, self.b.elements(self.targets))
    }
}

/// A term's GPU part: its device data and the passes of each evaluation.
pub(crate) trait GpuTerm {
    /// The passes that add the term at the particles (`e.targets == e.n`).
    fn passes(&self, e: &GpuEval) -> Result<Vec<Pass>>;

    /// The passes that add the term at `points` (T × d), from the state the last evaluation at
    /// the particles left on the device. A term evaluated on the host pushes itself and the
    /// buffer its values go into onto `host`.
    fn passes_at(&self, e: &GpuEval, points: &[f64], host: &mut Vec<HostAt>) -> Result<Vec<Pass>>;

    /// Whether the term's layouts can pack `points` (see `Layout::contains`).
    fn contains(&self, _points: &[f64], _dim: usize) -> bool {
        true
    }

    /// The grid of its particle cell sums, where it has one.
    fn grid(&self) -> Option<&CellGrid> {
        None
    }

    /// The host-evaluated term and the buffer its δF/δm at the particles is uploaded into.
    fn host(&self) -> Option<(&CustomTerm, &wgpu::Buffer)> {
        None
    }
}

/// A host-evaluated term and the buffer its values at `rates_at`'s points go into.
pub(crate) type HostAt = (CustomTerm, wgpu::Buffer);

/// One term of F as [`energy_accumulate`] adds it, named after what its kernel sums l1, l2 hold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Accumulate {
    /// l1 = log Σ_j w_j W(x, X_j): δF += strength e^l1, f += ½ strength e^l1.
    Interaction {
        /// The interaction's strength.
        strength: f64,
    },
    /// l1 = log k*μᴺ, l2 = log k*ν: δF += e^l1 − e^l2, f += ½ e^l1 − e^l2.
    Mmd,
    /// l1 = δF, l2 = f, added as they are: the network's (l1 its pull plus penalty, l2 the
    /// penalty λ/2 |x|²), a user pair kernel's (l1 = Σ_j w_j W(x, X_j), l2 = ½ l1) and a user
    /// term's (l1 its δF/δm, l2 = 0).
    Linear,
    /// l1 = log (1/M) Σ_k φ(z_k − x)/p(z_k): δF −= e^l1, f += 0.
    Npmle,
}

/// Adds one energy term's δF/δm and its per-target share f of F to `energy` = (δF, f) per
/// target: the twin of `energy_accumulate.wgsl`. F(μᴺ) = Σ_i w_i f_i plus the terms' data and
/// constant parts when the targets are the particles.
pub fn energy_accumulate(term: Accumulate, l1: &[f64], l2: &[f64], energy: &mut [(f64, f64)]) {
    for (i, e) in energy.iter_mut().enumerate() {
        match term {
            Accumulate::Interaction { strength } => {
                let s = strength * l1[i].exp();
                e.0 += s;
                e.1 += 0.5 * s;
            }
            Accumulate::Mmd => {
                let (s, nu) = (l1[i].exp(), l2[i].exp());
                e.0 += s - nu;
                e.1 += 0.5 * s - nu;
            }
            Accumulate::Linear => {
                e.0 += l1[i];
                e.1 += l2[i];
            }
            Accumulate::Npmle => e.0 -= l1[i].exp(),
        }
    }
}

/// Mirrors `Params` in energy_accumulate.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct AccumulateParams {
    n: u32,
    kind: u32,
    first: u32,
    pad0: u32,
    strength: f32,
    pad1: [f32; 3],
}

use Bind::{Read as R, Uniform as U, Write as W};

const ENERGY_ACCUMULATE: Shader = Shader {
    name: "energy_accumulate",
    source: include_str!("../../shaders/energy_accumulate.wgsl"),
    workgroup: ELEMENT_WG,
    binds: &[U, R, R, R, W, R],
    uniforms: &[size_of::<AccumulateParams>()],
};

/// The energies' shaders, for the checks that cover every shader: the accumulation and each
/// term's own.
pub(crate) const SHADERS: [&[&Shader]; 4] = [&[&ENERGY_ACCUMULATE], network::SHADERS, npmle::SHADERS, pair::SHADERS];

/// A positive kernel width: a Gaussian of that width must exist on the space (at most the side
/// on the torus); `field` names it.
pub(crate) fn check_width(space: &Space, width: f64, field: &str) -> Result<Gaussian> {
    Gaussian::new(space, width, false, field)
}
