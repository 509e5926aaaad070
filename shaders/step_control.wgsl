// Between the evaluation and the update: decides whether the step is taken and with which h,
// without a readback (CPU twin: stepper::Stepper::step_control). A function, not a pass: one
// invocation of `summarise_final` calls it once the stats are written (the text after this one
// declares `stats` and `control`), so a step has no single-invocation dispatch of its own.
//
// The order of the checks is the CPU engine's: the final time, non-finite rates, then (Euler)
// positivity h · max_i a_i < 1. A failed check halts the device loop before the update, so the
// weights stay those after the last good step and the host can name the step and the particle.
//
// Time for an automatic h is kept in 64-bit fixed point (two u32) on the device: exact integer
// sums, so the clock's error is that of quantising each h (about 6e-8 h), not an f32 running sum.

struct StepParams {
    auto_h: u32,
    exponential: u32,
    // Fixed h: steps in this batch, from the host's f64 clock (so the count matches the CPU's).
    n_fixed: u32,
    has_until: u32,
    h_fixed: f32,
    // Fixed h: the last step, shortened by the host to land on `until`.
    h_last: f32,
    safety: f32,
    h_max: f32,
    // Fixed-point units per unit of time (automatic h).
    scale: f32,
    _pad0: f32,
    // until − t0 in units (automatic h with a final time).
    total_lo: u32,
    total_hi: u32,
}

@group(0) @binding(0) var<uniform> params: StepParams;
@group(0) @binding(1) var<storage, read> g: array<f32>;

const TWO32: f32 = 4294967296.0;

fn to_units(x: f32) -> vec2<u32> {
    let hi = u32(floor(x / TWO32));
    return vec2<u32>(u32(x - f32(hi) * TWO32), hi);
}

fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn sub64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return vec2<u32>(a.x - b.x, a.y - b.y - select(0u, 1u, a.x < b.x));
}

fn step_control() {
    if control[C_HALTED] != RUNNING {
        return;
    }
    let k = control[C_STEPS];
    let bad_lw = control[C_BAD_LOG_WEIGHT];
    if bad_lw != NONE {
        control[C_HALTED] = ERR_LOG_WEIGHT;
        control[C_PARTICLE] = bad_lw;
        return;
    }
    let elapsed = vec2<u32>(control[C_ELAPSED_LO], control[C_ELAPSED_HI]);
    let total = vec2<u32>(params.total_lo, params.total_hi);
    if params.auto_h == 0u && k >= params.n_fixed {
        control[C_HALTED] = DONE;
        return;
    }
    if params.auto_h != 0u && params.has_until != 0u && all(elapsed == total) {
        control[C_HALTED] = DONE;
        return;
    }
    let bad = stats[S_BAD_RATE];
    if bad != NONE {
        control[C_HALTED] = ERR_RATE;
        control[C_PARTICLE] = bad;
        control[C_VALUE] = bitcast<u32>(g[bad]);
        return;
    }
    let max_a = bitcast<f32>(stats[S_MAX_A]);
    var h = params.h_fixed;
    var units = vec2<u32>(0u);
    var capped = false;
    if params.auto_h != 0u {
        var bound = max_a;
        if params.exponential != 0u {
            bound = bitcast<f32>(stats[S_MAX_ABS_A]);
        }
        h = params.h_max;
        if bound > 0.0 {
            h = min(params.h_max, params.safety / bound);
        }
        units = to_units(h * params.scale);
        if params.has_until != 0u {
            let rem = sub64(total, elapsed);
            let rem_f = f32(rem.y) * TWO32 + f32(rem.x);
            // Within a relative 1e-6 of the remaining time counts as landing on it, so that
            // quantisation never leaves a sliver of a step.
            if h * params.scale >= rem_f * (1.0 - 1e-6) {
                h = rem_f / params.scale;
                units = rem;
                capped = true;
            }
        }
    } else if k + 1u == params.n_fixed {
        h = params.h_last;
    }
    if params.exponential == 0u && h * max_a >= 1.0 {
        control[C_HALTED] = ERR_POSITIVITY;
        control[C_PARTICLE] = stats[S_ARGMAX];
        control[C_VALUE] = bitcast<u32>(h * max_a);
        control[C_H] = bitcast<u32>(h);
        return;
    }
    control[C_STEP_H] = bitcast<u32>(h);
    control[C_STEPS] = k + 1u;
    let after = add64(elapsed, units);
    control[C_ELAPSED_LO] = after.x;
    control[C_ELAPSED_HI] = after.y;
    if capped {
        control[C_CAPPED] = 1u;
    }
}
