//! The domain X: the torus T^d = [0, L)^d or R^d.

use crate::error::{Error, Result};

/// Which domain the particles live on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Domain {
    /// R^d.
    Euclidean,
    /// The flat torus [0, side)^d with periodic boundary (the paper's compact setting).
    Torus {
        /// The period L.
        side: f64,
    },
}

/// The largest dimension frflow supports (the GPU engine specialises loops up to it).
pub const MAX_DIM: usize = 8;

/// A domain together with its dimension.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Space {
    /// Dimension d, 1 ≤ d ≤ [`MAX_DIM`].
    pub dim: usize,
    /// Torus or R^d.
    pub domain: Domain,
}

impl Space {
    /// A checked space: `dim` in 1..=8, a positive finite torus side.
    pub fn new(dim: usize, domain: Domain) -> Result<Self> {
        if dim == 0 || dim > MAX_DIM {
            return Err(Error::invalid("domain.dim", dim, format!("an integer from 1 to {MAX_DIM}")));
        }
        if let Domain::Torus { side } = domain
            && !(side.is_finite() && side > 0.0 && side <= 1e100)
        {
            // Beyond 1e100 the positions' variances (∝ side²) overflow.
            return Err(Error::invalid("domain.side", side, "a number > 0 and ≤ 1e100"));
        }
        Ok(Space { dim, domain })
    }

    /// The torus side, if this is a torus.
    pub fn side(&self) -> Option<f64> {
        match self.domain {
            Domain::Torus { side } => Some(side),
            Domain::Euclidean => None,
        }
    }

    /// Maps a point into the fundamental cell [0, L)^d (identity on R^d).
    pub fn wrap(&self, x: &mut [f64]) {
        if let Some(l) = self.side() {
            for v in x {
                *v = v.rem_euclid(l);
                if *v >= l {
                    *v = 0.0;
                }
            }
        }
    }

    /// One coordinate of x − y, as the minimum image on the torus.
    #[inline]
    pub fn delta(&self, x: f64, y: f64) -> f64 {
        let d = x - y;
        match self.domain {
            Domain::Torus { side } => d - side * (d / side).round(),
            Domain::Euclidean => d,
        }
    }

    /// Squared (minimum-image) distance |x − y|².
    #[inline]
    pub fn sq_dist(&self, x: &[f64], y: &[f64]) -> f64 {
        x.iter().zip(y).map(|(a, b)| self.delta(*a, *b).powi(2)).sum()
    }
}
