//! `rates_at`: the rates a_ε(μᴺ, x) of the current weights at other points x, on the device.
//!
//! The points are packed in each kernel's layout and summed against the sources that the
//! evaluation of the current state left on the device (the particles with log w, C's second-pass
//! sources, D's node sources, the network's residuals, the NPMLE's coefficients), then the same
//! `energy_accumulate` shader and `divergence_derivative` function as at the particles give g(x),
//! in `rates_at`, which subtracts the evaluation's mean Σ w g / Σ w. So a large interacting system
//! can drive a small reference system (SPEC §4) with no readback but the T rates. With a cutoff
//! the ε-kernel's sums at the points use the evaluation's cell grids, and a truncation bound above
//! max_error is the evaluation's `kernel.cutoff` error.
//!
//! On R^d in fixed point a layout only covers a box; points outside it would overflow the integer
//! differences, so the engine is rebuilt once with the box grown to hold them (the state is kept).

use super::build::{self, Builder, Pass, staging, submit};
use super::cells;
use super::host::{DivParams, control};
use super::kernels;
use super::{Cache, GpuEngine};
use crate::energy::{HostAt, upload_host_term};
use crate::error::{Error, Result};
use crate::variant::GpuDiv;

/// The recorded passes for one set of points.
pub(super) struct AtPoints {
    /// The points as given (wrapped), to reuse the passes when they come again.
    points: Vec<f64>,
    passes: Vec<Pass>,
    /// The user's whole terms, whose δF/δm at the points the host writes before each submission.
    host: Vec<HostAt>,
    rates: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// The passes' own control block (a cutoff's bound may halt them).
    control: wgpu::Buffer,
}

impl GpuEngine {
    /// See [`crate::engine::Engine::rates_at`].
    pub(super) fn rates_at_points(&mut self, points: &[f64]) -> Result<Vec<f64>> {
        let space = self.model.space;
        let d = space.dim;
        crate::engine::check_points(&self.model, points)?;
        let t = points.len() / d;
        if t == 0 {
            return Ok(Vec::new());
        }
        let mut points = points.to_vec();
        points.chunks_exact_mut(d).for_each(|x| space.wrap(x));
        if !self.covers(&points) {
            self.grow_layouts(&points)?;
        }
        let s = self.evaluated()?;
        self.check_rates(&s)?;
        if self.at_points.as_ref().is_none_or(|a| a.points != points) {
            self.at_points = None;
            let scope = self.ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let at = self.record_at(points)?;
            if let Some(e) = pollster::block_on(scope.pop()) {
                return Err(Error::gpu_from(format_args!("setting up rates at {t} points"), e));
            }
            self.at_points = Some(at);
        }
        let at = self.at_points.as_ref().expect("just recorded");
        if !at.host.is_empty() {
            let w = self.device_weights()?;
            let at = self.at_points.as_ref().expect("just recorded");
            for (term, values) in &at.host {
                upload_host_term(&self.ctx.queue, term, values, &self.particles.positions, &w, &at.points, d)?;
            }
        }
        let at = self.at_points.as_ref().expect("just recorded");
        let scope = self.ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.ctx.queue.write_buffer(&at.control, 0, bytemuck::cast_slice(&control::fresh()));
        submit(&self.ctx, &at.passes);
        let data = build::read_bytes(&self.ctx, &at.rates, &at.staging, (t * 4) as u64)?;
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::gpu_from(format_args!("rates at {t} points"), e));
        }
        if self.cells.is_some() || self.energies.has_cells() {
            let c = build::read_f32(&self.ctx, &at.control, control::LEN)?;
            self.check_cutoff(&c.iter().map(|v| v.to_bits()).collect::<Vec<u32>>())?;
        }
        let a: Vec<f32> = bytemuck::pod_collect_to_vec(&data);
        Ok(a.into_iter().map(f64::from).collect())
    }

    /// Whether every layout can pack the points (and their quadrature nodes for D and D′).
    fn covers(&self, points: &[f64]) -> bool {
        let d = self.model.space.dim;
        let layout = &self.eps.layout;
        let nodes_fit = || !self.quadrature() || layout.contains(&self.model.quadrature_nodes(points), d);
        layout.contains(points, d) && nodes_fit() && self.energies.contains(points, d)
    }

    fn quadrature(&self) -> bool {
        self.model.variant.uses_quadrature() && self.model.has_divergence()
    }

    /// Rebuilds the engine with layouts that cover `points` as well, keeping the state.
    fn grow_layouts(&mut self, points: &[f64]) -> Result<()> {
        let d = self.model.space.dim;
        let state = crate::engine::Engine::state(self)?;
        let mut lo = vec![f64::INFINITY; d];
        let mut hi = vec![f64::NEG_INFINITY; d];
        for x in self.extra.chunks_exact(d).chain(points.chunks_exact(d)) {
            for k in 0..d {
                lo[k] = lo[k].min(x[k]);
                hi[k] = hi[k].max(x[k]);
            }
        }
        // The box's two corners: on R^d the layouts depend only on the bounding box.
        let extra = [lo, hi].concat();
        let mut grown = GpuEngine::build(
            self.ctx.clone(),
            self.model.clone(),
            self.particles.clone(),
            self.options.clone(),
            extra,
        )?;
        crate::engine::Engine::set_state(&mut grown, state)?;
        *self = grown;
        Ok(())
    }

    /// Uploads the points' fixed quantities and records their passes.
    fn record_at(&self, points: Vec<f64>) -> Result<AtPoints> {
        let m = &self.model;
        let (d, n) = (m.space.dim, self.n);
        let t = points.len() / d;
        let max_dim = self
            .options
            .max_workgroups_per_dimension
            .unwrap_or(u32::MAX)
            .min(self.ctx.limits().max_compute_workgroups_per_dimension)
            .max(1);
        let b = Builder {
            ctx: &self.ctx,
            checked: self.options.checked_shaders,
            max_dim,
            kernel_wg: self.options.kernel_workgroup,
            auto_cells_above: self.options.auto_cells_above,
        };
        let header = &self.eps.header;
        let fixed = m.at_points(&points)?;
        let quad = self.quadrature();
        let q = if quad { m.quadrature.len() } else { 1 };
        build::check_binding(
            &self.ctx,
            "the points of rates_at (T·Q packed nodes)",
            t * q,
            header.packed as usize * 16,
        )?;
        let fixed4: Vec<[f32; 4]> =
            (0..t).map(|i| [fixed.potential[i] as f32, fixed.log_ref[i] as f32, 0.0, 0.0]).collect();
        let energy0: Vec<[f32; 2]> = fixed.potential.iter().map(|u| [*u as f32; 2]).collect();
        let fixed_buf = b.init("at_fixed", bytemuck::cast_slice(&fixed4));
        let energy = b.init("at_energy", bytemuck::cast_slice(&energy0));
        // Its own control block: the engine's may hold a finished loop's halt code.
        let ctl = b.init("at_control", bytemuck::cast_slice(&control::fresh()));
        let bufs = &self.buffers;
        let (mut passes, host) =
            self.energies.passes_at(&b, header, n, &points, &bufs.lw, &fixed_buf, &energy, &ctl)?;
        let logs = b.zeros("at_logs", t * 4);
        let logs2 = b.zeros("at_logs2", t * 4);
        let node_logs = b.zeros("at_node_logs", if quad { t * q * 4 } else { 0 });
        let f32s: Vec<f32> = fixed.log_ref_nodes.iter().map(|v| *v as f32).collect();
        let node_ref = b.init("at_node_ref", bytemuck::cast_slice(&f32s));
        if m.has_divergence() {
            let eps = &self.eps;
            let pts = b.init("at_points", bytemuck::cast_slice(&eps.pack(&points)));
            // By cells where the evaluation's sums are (see `EngineCells::at`).
            let cut = match &self.cells {
                Some(c) => Some(c.at(&b, eps, &points, &fixed.nodes)?),
                None => None,
            };
            let truncation = b.zeros("at_truncation", 16);
            let eps_sum = cells::eps_sum(&b, header, eps, cut.as_ref().map(|c| (c, &truncation)), &ctl);
            let nodes = b.init("at_nodes", bytemuck::cast_slice(&eps.pack(&fixed.nodes)));
            passes.extend(m.variant.kernelization().passes_at(&GpuDiv {
                b: &b,
                header,
                eps,
                n,
                targets: t,
                q,
                cells: cut.is_some(),
                eps_sum: &eps_sum,
                points: &pts,
                nodes: &nodes,
                src: &bufs.src,
                src2: &bufs.src2,
                node_src: &bufs.node_src,
                lw: &bufs.lw,
                fixed: &fixed_buf,
                logs: &logs,
                logs2: &logs2,
                node_logs: &node_logs,
                node_ref: &node_ref,
                quad: &bufs.quad,
                control: &ctl,
            })?);
        }
        let div_params = DivParams {
            n: t as u32,
            q: q as u32,
            has_divergence: u32::from(m.has_divergence()),
            chunks: 0,
            sigma: m.sigma as f32,
            ln_n: (n as f64).ln() as f32,
            log_norm: 0.0,
            pad0: 0.0,
        };
        let rates = b.zeros("at_rates", t * 4);
        passes.push(b.pass(
            &kernels::RATES_AT,
            header,
            &div_params,
            &[
                &bufs.lw,
                &fixed_buf,
                &logs,
                &logs2,
                &node_logs,
                &node_ref,
                &bufs.quad,
                &energy,
                &ctl,
                &bufs.stats,
                &rates,
            ],
            b.elements(t),
        )?);
        Ok(AtPoints { points, passes, host, rates, staging: staging(&self.ctx, "at_staging", t * 4), control: ctl })
    }

    /// δF/δm at the particles and F(μᴺ) of the current weights (see `GpuEngine::energy_derivative`).
    pub(super) fn read_energy_derivative(&mut self) -> Result<(Vec<f64>, f64)> {
        let s = self.evaluated()?;
        let f = self.diagnostics(&s).f_energy;
        let data = build::read_bytes(&self.ctx, &self.buffers.energy, &self.buffers.staging_big, (self.n * 8) as u64)?;
        let e: Vec<[f32; 2]> = bytemuck::pod_collect_to_vec(&data);
        // The cache stays valid: nothing was written.
        debug_assert!(matches!(self.cache, Cache::Current(_)));
        Ok((e.into_iter().map(|v| f64::from(v[0])).collect(), f))
    }
}
