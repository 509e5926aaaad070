// Shared prelude, concatenated after the generated header (D, P, WG, TORUS, IMAGES, VARIANT, KL,
// FIXED) and before each shader's own text at pipeline-creation time.
//
// Points are packed as P vec4<u32> each: the d coordinates first (centred and scaled so that the
// kernel is exp2(-|x - y|^2); f32 bit patterns, or 32-bit fixed point when FIXED), zeros after
// them, and the f32 bits of the log2 coefficient in the last component of the last vec4. Every index used below is in bounds by construction: thread indices are compared with the
// element counts from the uniform parameters, which the host sets to the buffers' lengths, and
// workgroup-array indices are bounded by WG or by compile-time constants. That is what makes the
// unchecked shader modules sound.

const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;
// "No coefficient": far below any real log2 weight, yet finite so that no inf arithmetic occurs.
const SENTINEL: f32 = -3.0e38;
const NONE: u32 = 0xffffffffu;

// Halt codes in control[C_HALTED].
const RUNNING: u32 = 0u;
const DONE: u32 = 1u;
const ERR_POSITIVITY: u32 = 2u;
const ERR_RATE: u32 = 3u;
const ERR_LOG_WEIGHT: u32 = 4u;
const ERR_CUTOFF: u32 = 5u;

// Word offsets in the control buffer (array<u32>), mirrored by `Control` on the host.
const C_HALTED: u32 = 0u;
const C_STEPS: u32 = 1u;
const C_PARTICLE: u32 = 2u;
const C_VALUE: u32 = 3u;
const C_H: u32 = 4u;
const C_BAD_LOG_WEIGHT: u32 = 5u;
const C_CAPPED: u32 = 6u;
const C_STEP_H: u32 = 7u;
const C_ELAPSED_LO: u32 = 8u;
const C_ELAPSED_HI: u32 = 9u;

// Offsets in the stats buffer (array<f32>), mirrored by `Stats` on the host.
const S_MASS: u32 = 0u;
const S_WG: u32 = 1u;
const S_W2: u32 = 2u;
const S_WDF: u32 = 3u;
const S_WE: u32 = 4u;
const S_MEAN: u32 = 5u;
const S_MAX_G: u32 = 6u;
const S_MIN_G: u32 = 7u;
const S_MAX_LW: u32 = 8u;
const S_ARGMAX: u32 = 9u;
const S_BAD_RATE: u32 = 10u;
const S_MAX_A: u32 = 11u;
const S_MAX_ABS_A: u32 = 12u;
const S_FDATA: u32 = 13u;
const S_MOMENTS: u32 = 16u;
const STATS_LEN: u32 = 32u;

// Sums reduced by `summarise`: mass, Σ w g, Σ w², Σ w f (F's per-particle part), Σ w e, the
// data terms of F, then Σ w x_k and Σ w x_k².
const NS: u32 = 6u + 2u * D;

// One workgroup's (or thread's) partial of the `summarise` reduction.
struct Partial {
    sums: array<f32, NS>,
    max_g: f32,
    max_neg_g: f32,
    max_lw: f32,
    argmax: u32,
    bad: u32,
}

// The identity of `partial_merge`.
fn partial_empty() -> Partial {
    var p: Partial;
    for (var k = 0u; k < NS; k++) {
        p.sums[k] = 0.0;
    }
    p.max_g = SENTINEL;
    p.max_neg_g = SENTINEL;
    p.max_lw = SENTINEL;
    p.argmax = NONE;
    p.bad = NONE;
    return p;
}

// Combines two partials of `summarise` and `summarise_final`. Ties in max g go to the smaller
// index, as the CPU's first-maximum scan does.
fn partial_merge(a: Partial, b: Partial) -> Partial {
    var r = a;
    for (var k = 0u; k < NS; k++) {
        r.sums[k] = a.sums[k] + b.sums[k];
    }
    if b.max_g > a.max_g || (b.max_g == a.max_g && b.argmax < a.argmax) {
        r.max_g = b.max_g;
        r.argmax = b.argmax;
    }
    r.max_neg_g = max(a.max_neg_g, b.max_neg_g);
    r.max_lw = max(a.max_lw, b.max_lw);
    r.bad = min(a.bad, b.bad);
    return r;
}

fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// log(1 + x) accurate for small |x| without relying on (1 + x) - 1 surviving the compiler:
// 2 atanh(z) with z = x / (2 + x), |z| <= 1/3 for |x| <= 1/2.
fn log1p_(x: f32) -> f32 {
    if abs(x) > 0.5 {
        return log(1.0 + x);
    }
    let z = x / (2.0 + x);
    let z2 = z * z;
    let s = 1.0 + z2 * (1.0 / 3.0 + z2 * (1.0 / 5.0 + z2 * (1.0 / 7.0 + z2 * (1.0 / 9.0 + z2 * (1.0 / 11.0
        + z2 * (1.0 / 13.0 + z2 * (1.0 / 15.0)))))));
    return 2.0 * z * s;
}

// tanh(u) without the overflow of (e^2u − 1)/(e^2u + 1) at large |u|; absolute error a few ulp
// of 1, which is what the network's sums need.
fn tanh_(u: f32) -> f32 {
    let t = exp2(-2.0 * LOG2E * abs(u));
    let r = (1.0 - t) / (1.0 + t);
    return select(-r, r, u >= 0.0);
}

// Real coordinates in the last packed vec4 of a point (0 to 3; its w lane is the coefficient).
const LAST: u32 = D - 4u * (P - 1u);

// |d|² over the first `lanes` lanes; `lanes` is a constant after unrolling, so only the real
// coordinates cost anything.
fn norm2(d: vec4<f32>, lanes: u32) -> f32 {
    switch lanes {
        case 1u: {
            return d.x * d.x;
        }
        case 2u: {
            return dot(d.xy, d.xy);
        }
        case 3u: {
            return dot(d.xyz, d.xyz);
        }
        case 4u: {
            return dot(d, d);
        }
        default: {
            return 0.0;
        }
    }
}

// The linear index of this workgroup in a (possibly 2-D) grid.
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// Every buffer of mixed floats and indices (stats, control) is array<u32>; floats go through
// bitcast so that no NaN pattern is ever canonicalised by a float store.
