//! Fixed particle positions drawn from μ₀, and the evolving log-weights.
//!
//! Positions are drawn with ChaCha8 (a portable, named generator) and normal variates by
//! Marsaglia's polar method with the pure-Rust `libm` logarithm, so a seed gives bit-identical
//! positions on every machine.

use crate::error::{Error, Result, check_all_finite, check_positive};
use crate::model::{Domain, Space, check_gaussian, log_gaussian, log_sum_exp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One component of a Gaussian mixture μ₀.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    /// Mixture weight (> 0; the weights are normalised).
    pub weight: f64,
    /// Mean, one entry per coordinate.
    pub mean: Vec<f64>,
    /// Isotropic standard deviation (> 0).
    pub std: f64,
}

/// The initial distribution μ₀ of the positions.
#[derive(Clone, Debug, PartialEq)]
pub enum Initial {
    /// Uniform on the torus, or on the box [low, high]^d in R^d.
    Uniform {
        /// Lower corner (R^d only; ignored on the torus).
        low: f64,
        /// Upper corner (R^d only).
        high: f64,
    },
    /// N(mean, std² I) (wrapped onto the torus there).
    Gaussian {
        /// Mean.
        mean: Vec<f64>,
        /// Standard deviation.
        std: f64,
    },
    /// A Gaussian mixture.
    Mixture(Vec<Component>),
}

impl Initial {
    /// Checks the parameters against the space.
    pub fn validate(&self, space: &Space) -> Result<()> {
        match self {
            Initial::Uniform { low, high } => {
                if space.side().is_none() && !(low.is_finite() && high.is_finite() && low < high) {
                    return Err(Error::invalid(
                        "particles.init.low/high",
                        format!("[{low}, {high}]"),
                        "finite low < high (the box that μ₀ is uniform on in R^d)",
                    ));
                }
                Ok(())
            }
            Initial::Gaussian { mean, std } => check_gaussian(space, "particles.init", mean, *std),
            Initial::Mixture(cs) => {
                if cs.is_empty() {
                    return Err(Error::invalid("particles.init.components", "[]", "at least one component"));
                }
                for (i, c) in cs.iter().enumerate() {
                    let f = format!("particles.init.components[{i}]");
                    check_positive(format!("{f}.weight"), c.weight)?;
                    check_gaussian(space, &f, &c.mean, c.std)?;
                }
                Ok(())
            }
        }
    }

    /// log μ₀(x). On the torus, Gaussian densities are those of the unwrapped law, which is
    /// accurate when std is well below L (the oracle variant is meant for R^d).
    pub fn log_density(&self, space: &Space, x: &[f64]) -> f64 {
        let d = space.dim as f64;
        match self {
            Initial::Uniform { low, high } => match space.domain {
                Domain::Torus { side } => -d * side.ln(),
                Domain::Euclidean => {
                    if x.iter().all(|v| v >= low && v <= high) {
                        -d * (high - low).ln()
                    } else {
                        f64::NEG_INFINITY
                    }
                }
            },
            Initial::Gaussian { mean, std } => log_gaussian(space, x, mean, *std),
            Initial::Mixture(cs) => {
                let total: f64 = cs.iter().map(|c| c.weight).sum();
                let terms: Vec<f64> =
                    cs.iter().map(|c| (c.weight / total).ln() + log_gaussian(space, x, &c.mean, c.std)).collect();
                log_sum_exp(&terms)
            }
        }
    }

    /// Draws one point into `x`.
    fn draw(&self, space: &Space, rng: &mut ChaCha8Rng, x: &mut [f64]) {
        match self {
            Initial::Uniform { low, high } => {
                let (a, b) = match space.domain {
                    Domain::Torus { side } => (0.0, side),
                    Domain::Euclidean => (*low, *high),
                };
                for v in x.iter_mut() {
                    *v = a + (b - a) * rng.random::<f64>();
                }
            }
            Initial::Gaussian { mean, std } => {
                for (v, m) in x.iter_mut().zip(mean) {
                    *v = m + std * standard_normal(rng);
                }
            }
            Initial::Mixture(cs) => {
                let total: f64 = cs.iter().map(|c| c.weight).sum();
                let mut u = rng.random::<f64>() * total;
                let mut pick = &cs[cs.len() - 1];
                for c in cs {
                    if u < c.weight {
                        pick = c;
                        break;
                    }
                    u -= c.weight;
                }
                for (v, m) in x.iter_mut().zip(&pick.mean) {
                    *v = m + pick.std * standard_normal(rng);
                }
            }
        }
        space.wrap(x);
    }
}

/// A standard normal variate: Marsaglia's polar method, bit-reproducible across platforms.
pub fn standard_normal(rng: &mut impl Rng) -> f64 {
    loop {
        let u = 2.0 * rng.random::<f64>() - 1.0;
        let v = 2.0 * rng.random::<f64>() - 1.0;
        let s = u * u + v * v;
        if s > 0.0 && s < 1.0 {
            return u * (-2.0 * libm::log(s) / s).sqrt();
        }
    }
}

/// Fixed positions X_1 … X_N and, when μ₀ has a density, log μ₀(X_i).
#[derive(Clone, Debug, PartialEq)]
pub struct Particles {
    /// The space they live in.
    pub space: Space,
    /// N × d positions, row-major, inside the fundamental cell on the torus.
    pub positions: Vec<f64>,
    /// log μ₀(X_i), used by the unkernelized oracle variant.
    pub log_initial_density: Option<Vec<f64>>,
}

impl Particles {
    /// Draws N positions i.i.d. from μ₀ with ChaCha8 seeded by `seed`.
    pub fn sample(space: Space, init: &Initial, n: usize, seed: u64) -> Result<Self> {
        // Checked before allocating N × d values: a huge N is an error, not a capacity overflow.
        let max = crate::config::MAX_PARTICLES;
        if !(1..=max).contains(&n) {
            return Err(Error::invalid("particles.n", n, format!("an integer from 1 to {max}")));
        }
        init.validate(&space)?;
        let d = space.dim;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut positions = vec![0.0; n * d];
        for x in positions.chunks_exact_mut(d) {
            init.draw(&space, &mut rng, x);
        }
        let log_initial_density = Some(positions.chunks_exact(d).map(|x| init.log_density(&space, x)).collect());
        Ok(Particles { space, positions, log_initial_density })
    }

    /// Particles at given positions (N × d, row-major), with no known initial density.
    pub fn from_positions(space: Space, positions: Vec<f64>) -> Result<Self> {
        if positions.is_empty() || positions.len() % space.dim != 0 {
            return Err(Error::invalid(
                "positions",
                format!("{} values", positions.len()),
                format!("a non-empty multiple of d = {}", space.dim),
            ));
        }
        check_all_finite("positions", &positions)?;
        let mut positions = positions;
        for x in positions.chunks_exact_mut(space.dim) {
            space.wrap(x);
        }
        Ok(Particles { space, positions, log_initial_density: None })
    }

    /// N.
    pub fn len(&self) -> usize {
        self.positions.len() / self.space.dim
    }

    /// Whether there are no particles (never, for a constructed value).
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// X_i.
    pub fn position(&self, i: usize) -> &[f64] {
        &self.positions[i * self.space.dim..(i + 1) * self.space.dim]
    }
}

/// The evolving part of a run: log-weights (never underflow), the step count and the time.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    /// log w_i; Σ exp = the mass, 1 at the start.
    pub log_weights: Vec<f64>,
    /// Steps taken.
    pub step: u64,
    /// Flow time t.
    pub time: f64,
}

impl State {
    /// Uniform weights 1/N at t = 0.
    pub fn uniform(n: usize) -> Self {
        State { log_weights: vec![-(n as f64).ln(); n], step: 0, time: 0.0 }
    }

    /// The weights w_i = exp(log w_i) (f64 log-weights underflow only below 1e-308).
    pub fn weights(&self) -> Vec<f64> {
        self.log_weights.iter().map(|l| l.exp()).collect()
    }
}
