//! The device loop, run ahead of the host: [`Engine::advance`](crate::engine::Engine::advance)
//! without a stalled queue at every readback.
//!
//! A chain is one device loop: one control block (never reset between its rounds, so a halt in
//! one round stops every later one) and one set of step parameters, recorded as rounds of the
//! requested number of steps. Each round ends with an evaluation and copies the stats and control
//! block into its own staging slot, mapped asynchronously. When `advance` is called again with
//! the same request and nothing else touched the device in between (the run loop's pattern:
//! advance, evaluate, observe, advance …), the chain is speculative: the next round is submitted
//! before the current one is read back, so the device works through the host's readback and
//! observers. Its rounds also copy the log-weights into their slot, so that `state()` of the host's
//! step is read while the device runs ahead.
//!
//! Running ahead never changes a number: a round records exactly the passes a synchronous call
//! would. Anything else that needs the device at the host's state (`rates`, `rates_at`,
//! `set_state`, the weights' buffer) first settles the chain: waits for its rounds and, when they
//! ran past the host's step, restores the log-weights of that step from its slot.

use super::build;
use super::host::{NONE, StepParams, control, stats};
use super::{Cache, GpuEngine, SMALL_BYTES};
use crate::engine::remaining_time;
use crate::error::{Error, Result};
use crate::stepper::{Scheme, StepSize, Stepper};
use std::collections::VecDeque;
use std::sync::mpsc;

/// Staging slots: the round the host last read back, and two in flight.
const SLOTS: usize = 3;

/// What `advance` asked one round for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Request {
    steps: u64,
    stepper: Stepper,
    until: Option<f64>,
}

/// A submitted round whose readback is on its way.
struct Round {
    slot: usize,
    submission: wgpu::SubmissionIndex,
    mapped: mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
}

/// One device loop (see the module docs).
pub(super) struct Chain {
    request: Request,
    speculative: bool,
    /// The host's time when the chain began, and the automatic h's fixed-point units per unit time.
    t0: f64,
    scale: f64,
    /// Steps the chain may record in all, and recorded so far.
    limit: u64,
    recorded: u64,
    /// The device's step count (cumulative in the chain) at the last readback.
    landed_steps: u64,
    /// The slot and submission of the last readback: its log-weights are the host's state.
    landed: Option<(usize, wgpu::SubmissionIndex)>,
    next_slot: usize,
    in_flight: VecDeque<Round>,
}

/// The staging slots, made at the first chain.
pub(super) struct Slots {
    small: Vec<wgpu::Buffer>,
    lw: Vec<wgpu::Buffer>,
}

impl GpuEngine {
    /// See [`crate::engine::Engine::advance`].
    pub(super) fn advance_chained(&mut self, steps: u64, stepper: &Stepper, until: Option<f64>) -> Result<u64> {
        let mut taken = 0;
        // The user's whole terms are evaluated on the host at every state: one step per loop.
        let host = self.has_host_terms();
        let per_loop = if host { 1 } else { self.options.steps_per_readback.clamp(1, u64::from(u32::MAX)) };
        while taken < steps && !crate::engine::reached(self.time, until) {
            let round = (steps - taken).min(per_loop);
            if host {
                self.evaluated()?;
            }
            let request = Request { steps: round, stepper: *stepper, until };
            let continues = self.chain.as_ref().is_some_and(|c| c.request == request && c.can_continue());
            if !continues {
                self.settle()?;
                // With cutoff kernels `evaluate` reads the truncation bounds from the device after
                // the loop, which must then hold the host's state: no running ahead.
                let cutoff = self.cells.is_some() || self.energies.has_cells();
                let speculative =
                    self.options.run_ahead && !host && !cutoff && self.clean && self.last_request == Some(request);
                if !self.start_chain(request, speculative)? {
                    break;
                }
            }
            if self.chain.as_ref().is_some_and(|c| c.in_flight.is_empty()) {
                self.launch_round()?;
            }
            if self.chain.as_ref().is_some_and(|c| c.speculative && c.recorded < c.limit) {
                self.launch_round()?;
            }
            let k = self.land_round()?;
            if host {
                // The loop's last evaluation used the host's values of the state before.
                self.cache = Cache::Stale;
            }
            taken += k;
            self.last_request = Some(request);
            if k < round {
                break;
            }
        }
        self.clean = true;
        Ok(taken)
    }

    /// Begins a chain for `request` (false when it has no step to take: the final time is reached).
    fn start_chain(&mut self, request: Request, speculative: bool) -> Result<bool> {
        let Request { steps: round, stepper, until } = request;
        // A speculative chain records whole rounds up to `steps_per_readback` steps (bounding the
        // automatic h's fixed-point clock); a synchronous one, the one round asked for.
        let span_steps = if speculative { round * (self.options.steps_per_readback / round).max(1) } else { round };
        let t0 = self.time;
        let exponential = stepper.scheme == Scheme::Exponential;
        let mut params = StepParams { exponential: u32::from(exponential), ..Default::default() };
        let mut scale = 1.0;
        let limit = match stepper.step_size {
            StepSize::Fixed(h) => {
                // The CPU engine's clock, in f64, so both engines take the same steps.
                let (mut t, mut count, mut last) = (t0, 0u64, h);
                while count < span_steps {
                    let Some(h) = stepper.step_control(0.0, 0.0, t, until) else { break };
                    last = h;
                    t += h;
                    count += 1;
                }
                params.n_fixed = count as u32;
                params.h_fixed = h as f32;
                params.h_last = last as f32;
                count
            }
            StepSize::Auto { safety, h_max } => {
                let span = until.map_or(span_steps as f64 * h_max, |u| u - t0);
                // A power of two, so that the f32 copy is exact and the host converts back exactly.
                scale = 2f64.powi((2f64.powi(52) / span).log2().floor() as i32);
                let total = (span * scale).round() as u64;
                params.auto_h = 1;
                params.has_until = u32::from(until.is_some());
                params.safety = safety as f32;
                params.h_max = h_max as f32;
                params.scale = scale as f32;
                params.total_lo = total as u32;
                params.total_hi = (total >> 32) as u32;
                span_steps
            }
        };
        if limit == 0 {
            return Ok(false);
        }
        if self.slots.is_none() {
            let staging =
                |label: &str, bytes: usize| (0..SLOTS).map(|_| build::staging(&self.ctx, label, bytes)).collect();
            self.slots = Some(Slots {
                small: staging("chain_small", SMALL_BYTES as usize),
                lw: staging("chain_lw", self.n * 4),
            });
        }
        self.reset_control();
        self.ctx.queue.write_buffer(&self.buffers.step_params, 0, bytemuck::bytes_of(&params));
        self.chain = Some(Chain {
            request,
            speculative,
            t0,
            scale,
            limit,
            recorded: 0,
            landed_steps: 0,
            landed: None,
            next_slot: 0,
            in_flight: VecDeque::new(),
        });
        Ok(true)
    }

    /// Records and submits the chain's next round, its readback mapped asynchronously.
    fn launch_round(&mut self) -> Result<()> {
        let chain = self.chain.as_mut().expect("a chain");
        let steps = chain.request.steps.min(chain.limit - chain.recorded);
        // The first round evaluates its start unless the device holds that evaluation; every
        // later one starts where the last ended, with an evaluation.
        let mut skip_eval = chain.recorded > 0 || matches!(self.cache, Cache::Current(_));
        chain.recorded += steps;
        let slot = chain.next_slot;
        chain.next_slot = (slot + 1) % SLOTS;
        let speculative = chain.speculative;
        let passes = if chain.request.stepper.scheme == Scheme::Exponential { &self.exponential } else { &self.euler };
        let slots = self.slots.as_ref().expect("made with the chain");
        let scope = self.ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let per_submit = u64::from(self.options.steps_per_submission.max(1));
        let mut done = 0;
        let submission = loop {
            let chunk = per_submit.min(steps - done);
            let mut encoder = self.encoder();
            {
                let mut cpass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                for _ in 0..chunk {
                    // With the state's evaluation already on the device, `step_final` reduces its
                    // partials again (the same numbers) for the step control.
                    if !skip_eval {
                        build::record(&mut cpass, &self.eval);
                    }
                    skip_eval = false;
                    build::record(&mut cpass, std::slice::from_ref(&self.step_final));
                    build::record(&mut cpass, passes);
                }
                done += chunk;
                if done == steps {
                    // Evaluate the round's last state, for its diagnostics and the next step.
                    build::record(&mut cpass, &self.eval);
                    build::record(&mut cpass, std::slice::from_ref(&self.eval_final));
                }
            }
            if done < steps {
                self.ctx.queue.submit([encoder.finish()]);
                // Lets wgpu reclaim finished command buffers; does not wait.
                let _ = self.ctx.device.poll(wgpu::PollType::Poll);
                continue;
            }
            let b = &self.buffers;
            let stats_bytes = (stats::LEN * 4) as u64;
            encoder.copy_buffer_to_buffer(&b.stats, 0, &slots.small[slot], 0, stats_bytes);
            encoder.copy_buffer_to_buffer(&b.control, 0, &slots.small[slot], stats_bytes, (control::LEN * 4) as u64);
            if speculative {
                encoder.copy_buffer_to_buffer(&b.lw, 0, &slots.lw[slot], 0, (self.n * 4) as u64);
            }
            break self.ctx.queue.submit([encoder.finish()]);
        };
        let (tx, rx) = mpsc::channel();
        slots.small[slot].slice(..SMALL_BYTES).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let error = pollster::block_on(scope.pop());
        let chain = self.chain.as_mut().expect("a chain");
        chain.in_flight.push_back(Round { slot, submission, mapped: rx });
        if let Some(e) = error {
            self.end_chain()?;
            self.cache = Cache::Stale;
            return Err(Error::gpu_from("stepping", e));
        }
        Ok(())
    }

    /// Reads back the chain's oldest round and makes it the host's state; returns its steps.
    fn land_round(&mut self) -> Result<u64> {
        let chain = self.chain.as_mut().expect("a chain");
        let round = chain.in_flight.pop_front().expect("a round in flight");
        let small = &self.slots.as_ref().expect("made with the chain").small[round.slot];
        let words = wait_and_read(&self.ctx, &round, small, SMALL_BYTES, SMALL_BYTES);
        let words: Vec<u32> = match words {
            Ok(w) => bytemuck::pod_collect_to_vec(&w),
            Err(e) => {
                self.end_chain()?;
                self.cache = Cache::Stale;
                return Err(e);
            }
        };
        let (s, c) = words.split_at(stats::LEN);
        chain.landed = Some((round.slot, round.submission.clone()));
        let cumulative = u64::from(c[control::STEPS]);
        let taken = cumulative - chain.landed_steps;
        chain.landed_steps = cumulative;
        let (t0, scale, request, speculative) = (chain.t0, chain.scale, chain.request, chain.speculative);
        let halted = c[control::HALTED] != control::RUNNING;
        if halted || !speculative {
            // The later rounds of a halted loop do nothing: the device holds the host's state.
            self.end_chain()?;
        }
        self.conclude(&request.stepper, request.until, t0, scale, taken, s.to_vec(), c.to_vec())
    }

    /// Waits for a chain's rounds and releases their slots.
    fn end_chain(&mut self) -> Result<()> {
        let Some(mut chain) = self.chain.take() else { return Ok(()) };
        let slots = self.slots.as_ref().expect("made with the chain");
        let mut first_error = None;
        for round in chain.in_flight.drain(..) {
            if let Err(e) = wait_and_read(&self.ctx, &round, &slots.small[round.slot], SMALL_BYTES, 0) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Brings the device back to the host's state: ends the chain and, where its rounds ran past
    /// the host's step, restores that step's log-weights (and marks the evaluation stale).
    pub(super) fn settle(&mut self) -> Result<()> {
        let Some(chain) = &self.chain else { return Ok(()) };
        let ahead = chain.is_ahead();
        let landed = chain.landed.clone();
        self.end_chain()?;
        if let (true, Some(landed)) = (ahead, landed) {
            let lw = self.landed_log_weights(&landed)?;
            self.upload_log_weights(&lw);
        }
        Ok(())
    }

    /// The log-weights of the host's state when the device has run ahead of it, else `None`.
    pub(super) fn log_weights_behind(&self) -> Result<Option<Vec<f32>>> {
        match &self.chain {
            Some(c) if c.is_ahead() => {
                Ok(Some(self.landed_log_weights(c.landed.as_ref().expect("a round was read back"))?))
            }
            _ => Ok(None),
        }
    }

    /// The log-weights a read-back round copied into its slot, waiting for that round only (not
    /// for the rounds running ahead of it).
    fn landed_log_weights(&self, (slot, submission): &(usize, wgpu::SubmissionIndex)) -> Result<Vec<f32>> {
        let lw = &self.slots.as_ref().expect("made with the chain").lw[*slot];
        let bytes = (self.n * 4) as u64;
        let (tx, rx) = mpsc::channel();
        lw.slice(..bytes).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let round = Round { slot: *slot, submission: submission.clone(), mapped: rx };
        let data = wait_and_read(&self.ctx, &round, lw, bytes, bytes)?;
        Ok(bytemuck::pod_collect_to_vec(&data))
    }

    /// Turns the control block of a round into the host's step, time, cache and the CPU engine's
    /// errors; `taken` steps since the last readback, `t0` and `scale` the chain's clock.
    #[allow(clippy::too_many_arguments)]
    fn conclude(
        &mut self,
        stepper: &Stepper,
        until: Option<f64>,
        t0: f64,
        scale: f64,
        mut taken: u64,
        s: Vec<u32>,
        c: Vec<u32>,
    ) -> Result<u64> {
        let halted = c[control::HALTED];
        let bad_lw = c[control::BAD_LOG_WEIGHT];
        let start = self.time;
        // The time after `k` more steps, by the same clock as the device used.
        let clock = |k: u64| -> f64 {
            match stepper.step_size {
                StepSize::Fixed(_) => {
                    let mut t = start;
                    for _ in 0..k {
                        t += stepper.step_size(0.0, 0.0, remaining_time(t, until));
                    }
                    t
                }
                StepSize::Auto { .. } => {
                    if c[control::CAPPED] != 0 {
                        until.expect("capped only with a final time")
                    } else {
                        let units = u64::from(c[control::ELAPSED_LO]) | (u64::from(c[control::ELAPSED_HI]) << 32);
                        t0 + units as f64 / scale
                    }
                }
            }
        };
        if bad_lw != NONE {
            // The step that produced it is counted on the device but, as on the CPU, not in the
            // state; its weights are kept so the value can be reported.
            taken = taken.saturating_sub(1);
            self.step += taken;
            self.time = clock(taken);
            self.cache = Cache::Stale;
            let value = super::from_lw(self.read_f32(&self.buffers.lw, bad_lw as usize, 1)?[0]);
            return Err(Error::NonFinite { step: self.step, particle: bad_lw as usize, quantity: "log-weight", value });
        }
        self.step += taken;
        self.time = clock(taken);
        let particle = c[control::PARTICLE] as usize;
        let value = f64::from(f32::from_bits(c[control::VALUE]));
        match halted {
            control::ERR_POSITIVITY => {
                self.cache = Cache::Stale;
                // A fixed h is reported as the host's f64 value (the device used its f32 copy).
                let h = match stepper.step_size {
                    StepSize::Fixed(_) => stepper.step_size(0.0, 0.0, remaining_time(self.time, until)),
                    StepSize::Auto { .. } => f64::from(f32::from_bits(c[control::H])),
                };
                Err(Error::Positivity { step: self.step, particle, h_times_rate: value, h })
            }
            control::ERR_RATE => {
                self.cache = Cache::Stale;
                Err(Error::NonFinite { step: self.step, particle, quantity: "rate", value })
            }
            control::ERR_CUTOFF => {
                self.cache = Cache::Stale;
                self.check_cutoff(&c).map(|()| taken)
            }
            _ => {
                self.cache = Cache::Current(s);
                Ok(taken)
            }
        }
    }
}

impl Chain {
    /// Whether rounds past the host's state are in flight.
    pub(super) fn is_ahead(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Whether the chain has a round in flight or room to record one.
    fn can_continue(&self) -> bool {
        !self.in_flight.is_empty() || self.recorded < self.limit
    }
}

/// Waits for `round` and reads the first `bytes` bytes of the first `mapped` bytes of its slot
/// `buffer` (the range its `map_async` asked for), then unmaps it.
fn wait_and_read(
    ctx: &super::GpuContext,
    round: &Round,
    buffer: &wgpu::Buffer,
    mapped: u64,
    bytes: u64,
) -> Result<Vec<u8>> {
    let wait = |submission_index| {
        ctx.device
            .poll(wgpu::PollType::Wait { submission_index, timeout: None })
            .map_err(|e| Error::gpu_from("waiting for the device", e))
    };
    wait(Some(round.submission.clone()))?;
    ctx.check_lost()?;
    // The map's callback runs in that poll when wgpu has processed it; should it not have, wait
    // for the whole queue rather than block on the channel.
    let result = match round.mapped.try_recv() {
        Ok(r) => r,
        Err(_) => {
            wait(None)?;
            round.mapped.recv().map_err(|_| Error::gpu("the readback was dropped"))?
        }
    };
    result.map_err(|e| Error::gpu_from("reading back", e))?;
    let data = buffer
        .slice(..mapped)
        .get_mapped_range()
        .map(|view| view[..bytes as usize].to_vec())
        .map_err(|e| Error::gpu_from("reading back", e));
    buffer.unmap();
    data
}
