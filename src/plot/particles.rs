//! The picture of a weighted particle cloud against the target density (PNG and SVG).
//!
//! The target drawn is the Gibbs measure μ* ∝ π e^{−U/σ}, the minimiser when F is a potential
//! energy; for other energies only the particles are drawn.

use super::{Canvas, DrawResult, Figure, ramp, render};
use crate::error::Result;
use crate::model::{Energy, Model};
use crate::particles::Particles;
use crate::stepper::normalised_weights;
use plotters::prelude::*;
use std::path::Path;

/// log μ*(x) up to a constant, when F is a sum of potentials and σ > 0.
pub fn log_gibbs_target(model: &Model, x: &[f64]) -> Option<f64> {
    if model.sigma <= 0.0 {
        return None;
    }
    let mut u = 0.0;
    for e in &model.energy {
        match e {
            Energy::Potential(p) => u += p.value(&model.space, x),
            _ => return None,
        }
    }
    Some(model.reference.log_density(&model.space, x) - u / model.sigma)
}

/// Draws the final weights of `particles` over the target density into `png` and `svg`.
pub fn plot_particles(model: &Model, particles: &Particles, weights: &[f64], png: &Path, svg: &Path) -> Result<()> {
    render(&ParticlesFigure { model, particles, weights }, png, svg).map(|_| ())
}

/// The particles over the target density, filling the picture (no axes).
struct ParticlesFigure<'a> {
    model: &'a Model,
    particles: &'a Particles,
    weights: &'a [f64],
}

/// The plotted window: the torus cell, or the particles' bounding box with a margin.
fn window(particles: &Particles, k: usize) -> (f64, f64) {
    if let Some(l) = particles.space.side() {
        return (0.0, l);
    }
    let d = particles.space.dim;
    let (lo, hi) = particles
        .positions
        .chunks_exact(d)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x[k]), b.max(x[k])));
    let pad = 0.05 * (hi - lo).max(1e-9);
    (lo - pad, hi + pad)
}

impl Figure for ParticlesFigure<'_> {
    fn size(&self) -> (u32, u32) {
        (800, 800)
    }

    fn draw<DB: DrawingBackend>(&self, c: &Canvas<'_, DB>) -> DrawResult {
        let ParticlesFigure { model, particles, weights } = *self;
        draw(c, model, particles, weights)
    }
}

fn draw<DB: DrawingBackend>(c: &Canvas<'_, DB>, model: &Model, particles: &Particles, weights: &[f64]) -> DrawResult {
    let (w_px, h_px) = c.size();
    let (w_px, h_px) = (f64::from(w_px), f64::from(h_px));
    let d = particles.space.dim;
    let (x0, x1) = window(particles, 0);
    let px = |x: f64| ((x - x0) / (x1 - x0) * w_px) as i32;
    let n = weights.len() as f64;
    let cells = 160;
    if d == 1 {
        // Target density curve and a weighted histogram, both normalised to the window.
        let bins = 80;
        let mut hist = vec![0.0; bins];
        for (x, w) in particles.positions.iter().zip(weights) {
            let b = (((x - x0) / (x1 - x0)) * bins as f64) as usize;
            hist[b.min(bins - 1)] += w;
        }
        let grid: Vec<f64> = (0..cells).map(|i| x0 + (i as f64 + 0.5) / cells as f64 * (x1 - x0)).collect();
        let target: Option<Vec<f64>> = grid.iter().map(|x| log_gibbs_target(model, &[*x])).collect();
        // A density on the grid: weights scaled to mean 1.
        let target = target.map(|t| normalised_weights(&t).into_iter().map(|p| p * cells as f64).collect::<Vec<_>>());
        let hist: Vec<f64> = hist.iter().map(|h| h * bins as f64).collect();
        let top = hist.iter().chain(target.iter().flatten()).copied().fold(1e-12, f64::max) * 1.1;
        let py = |y: f64| (h_px - y / top * h_px) as i32;
        for (b, h) in hist.iter().enumerate() {
            let (lo, hi) = (x0 + b as f64 / bins as f64 * (x1 - x0), x0 + (b + 1) as f64 / bins as f64 * (x1 - x0));
            c.rect((px(lo), py(*h)), (px(hi), py(0.0)), ramp(0.2).mix(0.6))?;
        }
        if let Some(t) = target {
            let pts: Vec<(i32, i32)> = grid.iter().zip(&t).map(|(x, p)| (px(*x), py(*p))).collect();
            c.line(pts, RED, 3)?;
        }
        return Ok(());
    }
    let (y0, y1) = window(particles, 1);
    let py = |y: f64| (h_px - (y - y0) / (y1 - y0) * h_px) as i32;
    // Background: the target's density on the plane of the first two coordinates (d = 2 only).
    if d == 2 {
        let grid: Vec<Option<f64>> = (0..cells * cells)
            .map(|k| {
                let x = x0 + ((k % cells) as f64 + 0.5) / cells as f64 * (x1 - x0);
                let y = y0 + ((k / cells) as f64 + 0.5) / cells as f64 * (y1 - y0);
                log_gibbs_target(model, &[x, y])
            })
            .collect();
        if grid.iter().all(Option::is_some) {
            let v: Vec<f64> = grid.into_iter().flatten().collect();
            let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            for (k, l) in v.iter().enumerate() {
                let (i, j) = ((k % cells) as f64, (k / cells) as f64);
                let xa = x0 + i / cells as f64 * (x1 - x0);
                let xb = x0 + (i + 1.0) / cells as f64 * (x1 - x0);
                let ya = y0 + j / cells as f64 * (y1 - y0);
                let yb = y0 + (j + 1.0) / cells as f64 * (y1 - y0);
                let t = (l - m).exp();
                let shade = RGBColor((255.0 - 120.0 * t) as u8, (255.0 - 60.0 * t) as u8, 255);
                c.rect((px(xa), py(yb)), (px(xb), py(ya)), shade)?;
            }
        }
    }
    // Particles: area proportional to N·w_i, colour by weight.
    let wmax = weights.iter().copied().fold(0.0, f64::max).max(1e-300);
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| weights[*a].total_cmp(&weights[*b]));
    for i in order {
        let x = particles.position(i);
        let r = (1.5 * (n * weights[i]).sqrt()).clamp(0.5, 12.0);
        c.circle(px(x[0]), py(x[1]), r as i32, ramp(weights[i] / wmax).mix(0.85))?;
    }
    Ok(())
}
