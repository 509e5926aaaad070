//! ∫ U dm: position-only, so both engines fold U into the fixed per-particle values when they
//! are built (see `Model::at_points`) and the term has no per-evaluation part. The potentials
//! themselves live in [`crate::model::Potential`], shared with the Gibbs reference.

use super::{CpuTerm, DataSource, Energy, GpuSetup, GpuTerm, Term, TermConfig};
use crate::config::{EnergyPotentialConfig, PotentialConfig};
use crate::error::Result;
use crate::model::{Model, Potential, Space};

impl Term for Potential {
    fn validate(&self, space: &Space, field: &str) -> Result<()> {
        Potential::validate(self, space, &format!("{field}.potential"))
    }

    fn describe(&self) -> String {
        format!("potential {}", self.name())
    }

    fn position_only(&self, space: &Space, x: &[f64]) -> Option<f64> {
        Some(self.value(space, x))
    }

    fn cpu(&self, _model: &Model, _positions: &[f64]) -> Result<Option<Box<dyn CpuTerm>>> {
        Ok(None)
    }

    fn gpu(&self, _setup: &mut GpuSetup) -> Result<Option<Box<dyn GpuTerm>>> {
        Ok(None)
    }
}

impl TermConfig for EnergyPotentialConfig {
    fn build(&self, field: &str, space: &Space, _data: &DataSource) -> Result<Energy> {
        let potential = PotentialConfig::from(self).build(space.dim, field)?;
        // Flat keys: `energy[0].strength`, not `energy[0].potential.strength`.
        potential.validate(space, field)?;
        Ok(Energy::Potential(potential))
    }
}
