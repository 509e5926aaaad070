// The pair loop shared by the kernel-sum shaders (log_kernel_sum.wgsl and
// log_kernel_sum_cells.wgsl), concatenated after kernel_params.wgsl and before each of them: the
// targets and sources, the source tile, and the log-domain accumulation of one target's sum.
//
// Sources are staged through a workgroup tile of WG points; each invocation owns one target and
// walks the tile four sources at a time (`accumulate`) into four independent accumulators.
// Everything is in log2 units: coordinates are pre-scaled so that exp(-|x - y|^2 / (2 eps^2)) is
// exp2(-|x' - y'|^2), and coefficients are multiplied by log2(e).
//
// Cost per pair: exactly one special-function op (the exp2 of the pair's exponent) on every path;
// `tests/kernel_op_count.rs` counts them in naga's IR. What would need more is done otherwise:
// - Minimum image on the torus: both points lie in [-L/2, L/2), so their difference lies in
//   (-L, L) and one compare-and-subtract (a select, no round()) brings it to [-L/2, L/2).
// - Large coordinates (FIXED): 32-bit fixed point, split when a point is staged (once per tile,
//   not per pair) into an exact f32 high part (whole multiples of 2^16 steps) and an exact f32
//   low part; the difference (hi_t - hi_s) + (lo_t - lo_s) is then exact up to one final
//   rounding, as accurate as converting the exact integer difference, with no per-pair int→float
//   conversion.
// - Periodic images (IMAGES > 0): the factor Σ_n exp2(-(x + nL)^2) / exp2(-x^2) of each
//   coordinate is a sum of exp2 of non-positive arguments, evaluated by `exp2_fma` on the FMA
//   pipe (relative error < 1e-8) rather than on the special-function unit.
// - The log-domain rescale (below) is a rare branch: at most (largest exponent − first shift) /
//   RESCALE times per target, never per pair.
//
// Underflow: the accumulators hold Σ exp2(e_s - m) with a per-target shift m that starts at the
// target's own packed coefficient (the self term of a targets = sources pass, or SENTINEL when
// there is none) and is raised, with a rescale of the accumulators, whenever a group of sources
// exceeds it by more than RESCALE. So the largest term seen is >= 2^0 after the first real group,
// no term exceeds 2^RESCALE, and neither tiny weights nor a bandwidth far below the spacing can
// give log 0 or overflow.

@group(0) @binding(1) var<storage, read> targets: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> sources: array<vec4<u32>>;

// The staged sources: f32 coordinates (or their high parts when FIXED), the coefficient in the
// last lane; and the low parts when FIXED (PL = P then, else 1 and unused).
var<workgroup> tile: array<vec4<f32>, WG * P>;
var<workgroup> tile_lo: array<vec4<f32>, WG * PL>;
var<workgroup> halt: u32;
var<private> tgt: array<vec4<f32>, P>;
var<private> tgt_lo: array<vec4<f32>, PL>;
// The running shift and the four accumulators of this invocation's target.
var<private> m: f32;
var<private> acc: vec4<f32>;

// Largest allowed excess (log2 units) of a term over the shift before rescaling.
const RESCALE: f32 = 32.0;

// Packed vec4 number p of a point as tile values: f32 lanes, or (hi, lo) parts of fixed point.
// The coefficient lane of the last vec4 is restored by the caller.
fn unpack(raw: vec4<u32>) -> array<vec4<f32>, 2> {
    if FIXED {
        let x = bitcast<vec4<i32>>(raw);
        let hi = vec4<f32>(x >> vec4<u32>(16u));
        let lo = vec4<f32>(x & vec4<i32>(0xffff)) * (1.0 / 65536.0);
        return array<vec4<f32>, 2>(hi, lo);
    }
    return array<vec4<f32>, 2>(bitcast<vec4<f32>>(raw), vec4<f32>(0.0));
}

// The difference target − tile[j] of packed vec4 number p, in tile units, at the minimum image
// on the torus. Lanes beyond the real coordinates hold garbage and are never summed.
fn diff(j: u32, p: u32) -> vec4<f32> {
    var d = tgt[p] - tile[j * P + p];
    if TORUS {
        let half = vec4<f32>(0.5 * params.side);
        let side = vec4<f32>(params.side);
        d += select(vec4<f32>(0.0), side, d < -half) - select(vec4<f32>(0.0), side, d >= half);
    }
    if FIXED {
        d += tgt_lo[p] - tile_lo[j * P + p];
    }
    return d;
}

// The product of the first `lanes` lanes.
fn lane_product(v: vec4<f32>, lanes: u32) -> f32 {
    switch lanes {
        case 1u: {
            return v.x;
        }
        case 2u: {
            return v.x * v.y;
        }
        case 3u: {
            return v.x * v.y * v.z;
        }
        case 4u: {
            return v.x * v.y * v.z * v.w;
        }
        default: {
            return 1.0;
        }
    }
}

// (ln 2)^k / k!: the Taylor coefficients of 2^f.
const EXP2_TAYLOR = array<f32, 8>(1.0, 6.9314718055994531e-1, 2.4022650695910071e-1, 5.5504108664821580e-2,
    9.6181291076284770e-3, 1.3333558146428443e-3, 1.5403530393381608e-4, 1.5252733804059840e-5);

// 2^v lane-wise on the FMA pipe, for v ≤ 1 (v below -126 gives 2^-126, which is 0 against the
// 1 it is added to): v = n + f with n = round(v) by the 1.5·2^23 trick and |f| ≤ 1/2; 2^f by its
// Taylor polynomial of degree EXP2_DEGREE (3 to 7, relative error (ln 2 / 2)^(k+1) / (k+1)!, from
// 6e-4 down to 6e-9; the host takes the least degree whose error, times the largest image term,
// stays below 1e-8 of K(0): see `Layout::exp2_degree`), 2^n written into the exponent bits.
fn exp2_fma(v: vec4<f32>) -> vec4<f32> {
    let x = max(v, vec4<f32>(-126.0));
    let t = x + vec4<f32>(12582912.0);
    let f = x - (t - vec4<f32>(params.rounder));
    var p = vec4<f32>(EXP2_TAYLOR[EXP2_DEGREE]);
    for (var k = 0u; k < EXP2_DEGREE; k++) {
        p = fma(p, f, vec4<f32>(EXP2_TAYLOR[EXP2_DEGREE - 1u - k]));
    }
    // bits(t) = bits(1.5·2^23) + n = 0x4B400000 + n; the biased exponent n + 127 shifted in place.
    let scale = bitcast<vec4<f32>>((bitcast<vec4<i32>>(t) - vec4<i32>(0x4B400000 - 127)) << vec4<u32>(23u));
    return p * scale;
}

// Σ_{n≠0} exp2(-(x + nL)^2) / exp2(-x^2) lane-wise, for minimum-image scaled coordinates x:
// the nearer images exp2(-nL(nL - 2|x|)) and, unless negligible (FAR_IMAGES), the farther
// ones exp2(-nL(nL + 2|x|)). All arguments are ≤ 0.
fn image_ratio(x: vec4<f32>) -> vec4<f32> {
    let a = 2.0 * abs(x);
    let l = params.side * params.unit;
    var r = vec4<f32>(0.0);
    var nl = 0.0;
    for (var n = 0u; n < IMAGES; n++) {
        nl += l;
        r += exp2_fma(-nl * (nl - a));
        if FAR_IMAGES {
            r += exp2_fma(-nl * (nl + a));
        }
    }
    return r;
}

// For tile entry j: x = log2 of coefficient times the minimum-image kernel, y = the periodic
// images' factor (1 without images).
fn pair(j: u32) -> vec2<f32> {
    var s = 0.0;
    var f = 1.0;
    for (var p = 0u; p < P; p++) {
        let lanes = select(4u, LAST, p == P - 1u);
        let d = diff(j, p);
        s += norm2(d, lanes);
        if IMAGES > 0u {
            f *= lane_product(vec4<f32>(1.0) + image_ratio(d * params.unit), lanes);
        }
    }
    return vec2<f32>(tile[j * P + P - 1u].w - s * params.unit2, f);
}

// Raises the shift to `e` (rare: see the header).
fn rescale(e: f32) {
    acc *= exp2(m - e);
    m = e;
}

// Adds tile entries j .. j + 3 to the accumulators.
fn accumulate(j: u32) {
    let p0 = pair(j);
    let p1 = pair(j + 1u);
    let p2 = pair(j + 2u);
    let p3 = pair(j + 3u);
    let e = vec4<f32>(p0.x, p1.x, p2.x, p3.x);
    let emax = max(max(e.x, e.y), max(e.z, e.w));
    if emax > m + RESCALE {
        rescale(emax);
    }
    var term = exp2(e - vec4<f32>(m));
    if IMAGES > 0u {
        term *= vec4<f32>(p0.y, p1.y, p2.y, p3.y);
    }
    acc += term;
}

// Loads target t into this invocation's registers and returns its packed coefficient (SENTINEL
// when it has none): the shift's starting value.
fn load_target(t: u32) -> f32 {
    for (var p = 0u; p < P; p++) {
        let v = unpack(targets[t * P + p]);
        tgt[p] = v[0];
        if FIXED {
            tgt_lo[p] = v[1];
        }
    }
    let c = bitcast<f32>(targets[t * P + P - 1u].w);
    tgt[P - 1u].w = c;
    return c;
}

// Stages source s in tile slot `slot`.
fn stage(slot: u32, s: u32) {
    for (var p = 0u; p < P; p++) {
        let v = unpack(sources[s * P + p]);
        tile[slot * P + p] = v[0];
        if FIXED {
            tile_lo[slot * P + p] = v[1];
        }
    }
    tile[slot * P + P - 1u].w = bitcast<f32>(sources[s * P + P - 1u].w);
}

// Pads tile slot `slot`: zero coordinates and no coefficient, so it adds exp2(SENTINEL - m) = 0.
fn pad(slot: u32) {
    for (var p = 0u; p < P; p++) {
        tile[slot * P + p] = vec4<f32>(0.0);
        if FIXED {
            tile_lo[slot * P + p] = vec4<f32>(0.0);
        }
    }
    tile[slot * P + P - 1u].w = SENTINEL;
}
