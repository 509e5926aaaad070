// The pair loop shared by the kernel-sum shaders (log_kernel_sum.wgsl and
// log_kernel_sum_cells.wgsl), concatenated after kernel_params.wgsl and before each of them: the
// targets and sources, the source tile, and the log-domain accumulation of one target's sum.
//
// Sources are staged through a workgroup tile of WG points; each invocation owns one target and
// walks the tile four sources at a time (`accumulate`) into four independent accumulators.
// Everything is in log2 units: coordinates are pre-scaled so that exp(-|x - y|^2 / (2 eps^2)) is
// exp2(-|x' - y'|^2), and coefficients are multiplied by log2(e).
//
// Cost per pair: exactly one special-function op (the exp2 of the pair's exponent) on every path
// but IMAGES_SFU (an engine option, off by default); `tests/kernel_op_count.rs` counts them in
// naga's IR. What would need more is done otherwise:
// - Minimum image on the torus: both points lie in [-L/2, L/2), so their difference d lies in
//   (-L, L) and min(|d|, L − |d|) is the minimum-image distance (no round()).
// - Large coordinates (FIXED): 32-bit fixed point. On R^d it is split when a point is staged
//   (once per tile, not per pair) into an exact f32 high part (whole multiples of 2^16 steps) and
//   an exact f32 low part; the difference (hi_t - hi_s) + (lo_t - lo_s) is then exact up to one
//   final rounding, as accurate as converting the exact integer difference, with no per-pair
//   int→float conversion. On the torus the wrapping integer difference is the minimum image, and
//   its two 16-bit halves become floats by the 2^23 trick (integer adds, no conversion).
// - Periodic images (IMAGES > 0): the factor Σ_n exp2(-(x + nL)^2) / exp2(-x^2) of each
//   coordinate is a sum of exp2 of non-positive arguments, evaluated by `exp2_fma` on the FMA
//   pipe (a minimax polynomial of the least degree that meets the kernel's tolerance) rather
//   than on the special-function unit.
// - The log-domain shift (below) is checked once per tile, not per pair (`sum_tile`).
// - With f32 coordinates the exponent less the shift is (c − m) − Σ d², the squares subtracted
//   by the FMAs that form them; the coefficient's lane comes with the coordinates' load.
//
// Underflow and overflow: the accumulators hold Σ exp2(e_s - m) with a per-target shift m that
// starts at the target's own packed coefficient (the self term of a targets = sources pass, or
// SENTINEL when there is none). A tile is summed without looking at the shift; if that made a
// sum reach OVERFLOW (2^40) or infinity, the tile is summed again from the sums before it, with
// the shift raised (and the accumulators rescaled) whenever a group of four sources exceeds it by
// more than RESCALE; after each tile, sums above 2^RESCALE move into the shift. So the largest
// term seen is >= 2^0 after the first real group, no sum exceeds 2^40, and neither tiny weights
// nor a bandwidth far below the spacing can give log 0 or overflow.

@group(0) @binding(1) var<storage, read> targets: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> sources: array<vec4<u32>>;

// The staged sources as bits: f32 coordinates, the fixed-point coordinates themselves on the
// torus, or the f32 high parts of fixed point on R^d; the coefficient's f32 bits in the last
// lane. And on R^d in fixed point the f32 low parts (PL = P then, else 1 and unused).
var<workgroup> tile: array<vec4<u32>, WG * P>;
var<workgroup> tile_lo: array<vec4<f32>, WG * PL>;
var<workgroup> halt: u32;
var<private> tgt: array<vec4<u32>, P>;
var<private> tgt_lo: array<vec4<f32>, PL>;
// The running shift and the four accumulators of this invocation's target.
var<private> m: f32;
var<private> acc: vec4<f32>;

// Largest allowed excess (log2 units) of a term over the shift before rescaling.
const RESCALE: f32 = 32.0;
// 2^40: sums at or above it (or NaN) mean that the unchecked pair loop must be redone with the
// shift checked (`sum_tile`). Sums start a tile below 2^RESCALE, so a tile of fewer than 256
// terms reaches it only with a term above 2^(RESCALE + 1): only when the shift must rise.
const OVERFLOW: f32 = 1099511627776.0;

// Packed vec4 number p of a point in fixed point on R^d as its exact f32 (hi, lo) parts. The
// coefficient lane of the last vec4 is restored by the caller.
fn split_fixed(raw: vec4<u32>) -> array<vec4<f32>, 2> {
    let x = bitcast<vec4<i32>>(raw);
    let hi = vec4<f32>(x >> vec4<u32>(16u));
    let lo = vec4<f32>(x & vec4<i32>(0xffff)) * (1.0 / 65536.0);
    return array<vec4<f32>, 2>(hi, lo);
}

// The difference target − v, where v = tile[j * P + p] (packed vec4 number p of tile entry j),
// in tile units; on the torus its absolute value at the minimum image (the kernel is even in each
// coordinate, so the sign is never needed). Lanes beyond the real coordinates hold garbage and
// are never summed.
fn diff(v: vec4<u32>, j: u32, p: u32) -> vec4<f32> {
    var d: vec4<f32>;
    if FIXED {
        if TORUS {
            // The torus is the u32 circle, so the wrapping difference n is the minimum image in
            // steps, exactly. n / 2^16 = hi + lo / 2^16 for its high (signed) and low 16 bits,
            // made floats without a conversion: bits(1.5·2^23) + hi is the float 1.5·2^23 + hi,
            // so hi − 128 is one exact subtraction away; lo | bits(2^23) is the float 2^23 + lo,
            // which times 2^-16 is exactly 128 + lo / 2^16. The FMA adds the two, rounding once.
            let n = bitcast<vec4<i32>>(tgt[p] - v);
            let hi = bitcast<vec4<f32>>((n >> vec4<u32>(16u)) + vec4<i32>(0x4B400000)) - vec4<f32>(12583040.0);
            let lo = bitcast<vec4<f32>>((n & vec4<i32>(0xffff)) | vec4<i32>(0x4B000000));
            d = abs(fma(lo, vec4<f32>(1.0 / 65536.0), hi));
        } else {
            d = (bitcast<vec4<f32>>(tgt[p]) - bitcast<vec4<f32>>(v)) + (tgt_lo[p] - tile_lo[j * P + p]);
        }
    } else {
        d = bitcast<vec4<f32>>(tgt[p]) - bitcast<vec4<f32>>(v);
        if TORUS {
            // |d| lies in [0, L); the minimum image is min(|d|, L − |d|), and L − |d| is exact
            // (Sterbenz) whenever it is the smaller.
            let a = abs(d);
            d = min(a, vec4<f32>(params.side) - a);
        }
    }
    return d;
}

// f · Π_{k < lanes} (1 + r_k), one FMA a lane: f + f·r_k.
fn times_one_plus(f: f32, r: vec4<f32>, lanes: u32) -> f32 {
    switch lanes {
        case 1u: {
            return fma(f, r.x, f);
        }
        case 2u: {
            let a = fma(f, r.x, f);
            return fma(a, r.y, a);
        }
        case 3u: {
            let a = fma(f, r.x, f);
            let b = fma(a, r.y, a);
            return fma(b, r.z, b);
        }
        case 4u: {
            let a = fma(f, r.x, f);
            let b = fma(a, r.y, a);
            let c = fma(b, r.z, b);
            return fma(c, r.w, c);
        }
        default: {
            return f;
        }
    }
}

// The minimax polynomials of 2^f on [−1/2, 1/2] in relative error, of degree 2 to 7 (row k − 2,
// lowest coefficient first). Their errors are `EXP2_ERROR` in engine/gpu/host.rs (1.7e-3 down to
// 4e-11); the host picks the degree (see `Layout::exp2_degree`).
const EXP2_MINIMAX = array<array<f32, 8>, 6>(
    array<f32, 8>(1.000443051142691, 0.7034448853081223, 0.23842675681985606, 0.0, 0.0, 0.0, 0.0, 0.0),
    array<f32, 8>(0.9999280927794696, 0.6932609913848709, 0.2426108095468514, 0.055171435569775024, 0.0, 0.0,
        0.0, 0.0),
    array<f32, 8>(0.9999992614705964, 0.693121817616297, 0.24024745067003284, 0.055917837510918,
        0.009570080149885599, 0.0, 0.0, 0.0),
    array<f32, 8>(1.0000000716505524, 0.6931469670534929, 0.2402211974278449, 0.055507133102843845,
        0.009675540368212254, 0.0013276454608344103, 0.0, 0.0),
    array<f32, 8>(1.0000000005542014, 0.6931472057374142, 0.2402264689031696, 0.055503287765044394,
        0.009618488996492126, 0.001339993144973988, 0.00015345800270823604, 0.0),
    array<f32, 8>(0.9999999999616791, 0.693147180728461, 0.24022651198177258, 0.05550410353403122,
        0.009618027250897419, 0.001333392259614951, 0.00015469292066717417, 1.5201915040350136e-05),
);

// 2^v lane-wise on the FMA pipe, for v ≤ 1: v = n + f with n = round(v) by the 1.5·2^23 trick and
// |f| ≤ 1/2, 2^f by the minimax polynomial of degree EXP2_DEGREE, n added to its exponent
// bits. That needs n ≥ −126, which holds for every image argument of every kernel with images in
// every dimension (−n²L² or −n(n + 1)L² at the least; `Layout::least_image_argument` and its
// test), so there is no clamp.
fn exp2_fma(x: vec4<f32>) -> vec4<f32> {
    // The literal and the uniform are the same number, but a compiler cannot prove it, so it
    // cannot fold (x + R) − R into x (Mesa's NIR does when both are the literal or both the
    // uniform).
    let t = x + vec4<f32>(12582912.0);
    let f = x - (t - vec4<f32>(params.rounder));
    var p = vec4<f32>(EXP2_MINIMAX[EXP2_DEGREE - 2u][EXP2_DEGREE]);
    for (var k = 0u; k < EXP2_DEGREE; k++) {
        p = fma(p, f, vec4<f32>(EXP2_MINIMAX[EXP2_DEGREE - 2u][EXP2_DEGREE - 1u - k]));
    }
    // bits(t) = bits(1.5·2^23) + n = 0x4B400000 + n, and 0x4B400000 << 23 wraps to 0, so
    // bits(t) << 23 is n in the exponent field: added to p's bits it multiplies p (in [0.7, 1.42])
    // by 2^n, which stays a normal number or 0-ish for n ≥ −126.
    return bitcast<vec4<f32>>(bitcast<vec4<i32>>(p) + (bitcast<vec4<i32>>(t) << vec4<u32>(23u)));
}

// Σ_{n≠0} exp2(-(x + nL)^2) / exp2(-x^2) lane-wise, for the minimum-image scaled distances
// x = |difference| ≤ L/2: the nearer images q_n = exp2(nL(2x − nL)) and, unless negligible
// (FAR_IMAGES), the farther ones p_n = exp2(−nL(2x + nL)), all ≤ 1. Only q_1 and p_1 are
// exponentials: q_n = q_(n−1) · q_1 · g^(n−1) with g = 2^(−2L²) (`params.image_decay`), and
// likewise p_n.
fn image_ratio(x: vec4<f32>) -> vec4<f32> {
    let l = params.side * params.unit;
    let q1 = image_exp2(fma(x, vec4<f32>(2.0 * l), vec4<f32>(-l * l)));
    var r = q1;
    var p1 = vec4<f32>(0.0);
    if FAR_IMAGES {
        p1 = image_exp2(fma(x, vec4<f32>(-2.0 * l), vec4<f32>(-l * l)));
        r += p1;
    }
    var q = q1;
    var p = p1;
    var decay = 1.0;
    for (var n = 0u; n < LATER_IMAGES; n++) {
        decay *= params.image_decay;
        q *= q1 * decay;
        r += q;
        if FAR_IMAGES {
            p *= p1 * decay;
            r += p;
        }
    }
    return r;
}

// The images per side after the first (IMAGES ≥ 1 wherever `image_ratio` is called).
const LATER_IMAGES: u32 = max(IMAGES, 1u) - 1u;

// 2^v for an image term: `exp2_fma` on the FMA pipe, or with IMAGES_SFU (the engine option
// `image_exponentials = Sfu`, and `frflow bench`'s `torus-images-sfu` row) the special-function
// unit's exp2, which costs a slow op per coordinate (two with the farther images) but fewer
// instructions; which is faster depends on the card.
fn image_exp2(v: vec4<f32>) -> vec4<f32> {
    var r: vec4<f32>;
    if IMAGES_SFU {
        r = exp2(v);
    } else {
        r = exp2_fma(v);
    }
    return r;
}

// e − Σ_{k < lanes} d_k², as one chain of FMAs.
fn less_norm2(e: f32, d: vec4<f32>, lanes: u32) -> f32 {
    switch lanes {
        case 1u: {
            return fma(-d.x, d.x, e);
        }
        case 2u: {
            return fma(-d.y, d.y, fma(-d.x, d.x, e));
        }
        case 3u: {
            return fma(-d.z, d.z, fma(-d.y, d.y, fma(-d.x, d.x, e)));
        }
        case 4u: {
            return fma(-d.w, d.w, fma(-d.z, d.z, fma(-d.y, d.y, fma(-d.x, d.x, e))));
        }
        default: {
            return e;
        }
    }
}

// For tile entry j: x = log2 of its coefficient times the minimum-image kernel, less `shift`;
// y = the periodic images' factor (1 without images). The exponent is (c − shift) − Σ d²: c − shift
// first, exact when the two are close, and with f32 coordinates the squares subtracted by the
// FMAs that form them. Each vec4 of the entry is read from the tile once (on lavapipe a second
// read of the coefficient's vec4 costs a quarter of the pair's time).
fn pair(j: u32, shift: f32) -> vec2<f32> {
    let last = tile[j * P + P - 1u];
    let c = bitcast<f32>(last.w) - shift;
    var e = c;
    var s = 0.0;
    var f = 1.0;
    for (var p = 0u; p < P; p++) {
        var v = last;
        if p < P - 1u {
            v = tile[j * P + p];
        }
        let lanes = select(4u, LAST, p == P - 1u);
        let d = diff(v, j, p);
        if FIXED {
            s += norm2(d, lanes);
        } else {
            e = less_norm2(e, d, lanes);
        }
        if IMAGES > 0u {
            f = times_one_plus(f, image_ratio(d * params.unit), lanes);
        }
    }
    if FIXED {
        e = fma(-s, params.unit2, c);
    }
    return vec2<f32>(e, f);
}

// Raises the shift to `e` (rare: see the header).
fn rescale(e: f32) {
    acc *= exp2(m - e);
    m = e;
}

// The largest lane.
fn max4(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

// Adds four terms to the accumulators, times their periodic images' factors where there are any.
fn add_terms(term: vec4<f32>, factors: vec4<f32>) {
    if IMAGES > 0u {
        acc = fma(term, factors, acc);
    } else {
        acc += term;
    }
}

// Adds tile entries j .. j + 3 to the accumulators, unchecked: `sum_tile` catches an overflow.
fn accumulate(j: u32) {
    let p0 = pair(j, m);
    let p1 = pair(j + 1u, m);
    let p2 = pair(j + 2u, m);
    let p3 = pair(j + 3u, m);
    let term = exp2(vec4<f32>(p0.x, p1.x, p2.x, p3.x));
    add_terms(term, vec4<f32>(p0.y, p1.y, p2.y, p3.y));
}

// Adds tile entries j .. j + 3 to the accumulators, raising the shift first when one of them
// exceeds it by more than RESCALE.
fn accumulate_checked(j: u32) {
    let p0 = pair(j, 0.0);
    let p1 = pair(j + 1u, 0.0);
    let p2 = pair(j + 2u, 0.0);
    let p3 = pair(j + 3u, 0.0);
    let e = vec4<f32>(p0.x, p1.x, p2.x, p3.x);
    let emax = max4(e);
    if emax > m + RESCALE {
        rescale(emax);
    }
    let term = exp2(e - vec4<f32>(m));
    add_terms(term, vec4<f32>(p0.y, p1.y, p2.y, p3.y));
}

// The staged tile summed again from `before` with the shift checked every four sources.
fn redo_tile(before: vec4<f32>) {
    acc = before;
    for (var j = 0u; j < WG; j += 4u) {
        accumulate_checked(j);
    }
}

// Adds the staged tile to this invocation's sums. The pair loop does not check the shift: the
// accumulators are checked once, after the tile, and if a term overflowed (or the sums reached
// OVERFLOW) the tile is summed again with the check (`redo_tile`). That happens only while the
// shift must rise: on the first tile of a target without a self term (shift SENTINEL), and when a
// source outweighs the sums so far by more than 2^(RESCALE + 1). A term far above the shift would
// also lose digits in (c − m) − Σ d². Then sums above 2^RESCALE move into the shift, as the
// checked loop would have done, so that every tile starts below 2^RESCALE.
fn sum_tile() {
    let before = acc;
    for (var j = 0u; j < WG; j += 4u) {
        accumulate(j);
    }
    var top = max4(acc);
    if !(top < OVERFLOW) {
        redo_tile(before);
        top = max4(acc);
    }
    if top > exp2(RESCALE) {
        rescale(m + floor(log2(top)));
    }
}

// Loads target t into this invocation's registers and returns its packed coefficient (SENTINEL
// when it has none): the shift's starting value.
fn load_target(t: u32) -> f32 {
    for (var p = 0u; p < P; p++) {
        tgt[p] = targets[t * P + p];
        if FIXED {
            if !TORUS {
                let v = split_fixed(targets[t * P + p]);
                tgt[p] = bitcast<vec4<u32>>(v[0]);
                tgt_lo[p] = v[1];
            }
        }
    }
    let c = targets[t * P + P - 1u].w;
    tgt[P - 1u].w = c;
    return bitcast<f32>(c);
}

// Stages source s in tile slot `slot`.
fn stage(slot: u32, s: u32) {
    for (var p = 0u; p < P; p++) {
        var bits = sources[s * P + p];
        if FIXED {
            if !TORUS {
                let v = split_fixed(bits);
                bits = bitcast<vec4<u32>>(v[0]);
                tile_lo[slot * P + p] = v[1];
            }
        }
        tile[slot * P + p] = bits;
    }
    tile[slot * P + P - 1u].w = sources[s * P + P - 1u].w;
}

// Pads tile slot `slot`: zero coordinates and no coefficient, so it adds exp2(SENTINEL - m) = 0.
fn pad(slot: u32) {
    for (var p = 0u; p < P; p++) {
        tile[slot * P + p] = vec4<u32>(0u);
        if FIXED {
            if !TORUS {
                tile_lo[slot * P + p] = vec4<f32>(0.0);
            }
        }
    }
    tile[slot * P + P - 1u].w = bitcast<u32>(SENTINEL);
}
