// out_t = log Σ_s exp(c_s) K(t, y_s) for every target t (CPU twin: engine::cpu::log_kernel_sum).
//
// Sources are staged through a workgroup tile of WG packed points; each invocation owns one
// target and walks the tile four sources at a time into four independent accumulators. Everything
// is in log2 units: coordinates are pre-scaled so that exp(-|x - y|^2 / (2 eps^2)) is
// exp2(-|x' - y'|^2), and coefficients are multiplied by log2(e).
//
// Underflow: the accumulators hold Σ exp2(e_s - m) with a per-target shift m that starts at the
// target's own packed coefficient (the self term of a targets = sources pass, or SENTINEL when
// there is none) and is raised, with a rescale of the accumulators, whenever a group of sources
// exceeds it by more than RESCALE. So the largest term seen is >= 2^0 after the first real group,
// no term exceeds 2^RESCALE, and neither tiny weights nor a bandwidth far below the spacing can
// give log 0 or overflow.
//
// Split sources (chunk_len > 0): when there are few targets (data points, a small reference
// system) one workgroup per target tile would leave most of a GPU idle, so the grid is
// target_groups × chunks and each workgroup sums one chunk of chunk_len sources. It then writes
// the pair (m, Σ exp2(e - m)) in log2 units to out[2 (chunk · n_targets + t)] and
// `log_sum_merge` combines the chunks in a fixed order. A chunk without the self term may
// underflow to 0 against a self-term shift; it is then below 2^-126 of the total, which
// contains the self term.

struct KernelParams {
    n_targets: u32,
    n_sources: u32,
    // Sources per chunk (a multiple of WG), or 0 for one pass over all sources.
    chunk_len: u32,
    // Workgroups per chunk along the targets (split sources only).
    target_groups: u32,
    // Natural-log constant factor of the kernel, added to the result.
    log_norm: f32,
    // Torus side in scaled units (unused on R^d) and its inverse.
    side: f32,
    inv_side: f32,
    // Scaled length of one fixed-point step (FIXED only).
    unit: f32,
}

@group(0) @binding(0) var<uniform> params: KernelParams;
@group(0) @binding(1) var<storage, read> targets: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> sources: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> control: array<u32>;

var<workgroup> tile: array<vec4<u32>, WG * P>;
var<workgroup> halt: u32;
var<private> tgt: array<vec4<u32>, P>;

// Largest allowed excess (log2 units) of a term over the shift before rescaling.
const RESCALE: f32 = 32.0;

fn min_image(d: vec4<f32>) -> vec4<f32> {
    if TORUS {
        return d - params.side * round(d * params.inv_side);
    }
    return d;
}

// Real coordinates in the last packed vec4 (0 to 3; its w lane is the coefficient).
const LAST: u32 = D - 4u * (P - 1u);

// The scaled difference target − tile[j] of packed vec4 number p (minimum image on the torus).
// Lanes beyond the real coordinates hold garbage and are never summed.
fn diff(j: u32, p: u32) -> vec4<f32> {
    if FIXED {
        return vec4<f32>(bitcast<vec4<i32>>(tgt[p] - tile[j * P + p]));
    }
    return min_image(bitcast<vec4<f32>>(tgt[p]) - bitcast<vec4<f32>>(tile[j * P + p]));
}

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

// log2 of coefficient times kernel at the minimum image, for tile entry j.
fn exponent(j: u32) -> f32 {
    var s = 0.0;
    for (var p = 0u; p < P; p++) {
        s += norm2(diff(j, p), select(4u, LAST, p == P - 1u));
    }
    if FIXED {
        s *= params.unit * params.unit;
    }
    return bitcast<f32>(tile[j * P + P - 1u].w) - s;
}

// Σ_n exp2(-(x + nL)^2) / exp2(-x^2) for one minimum-image coordinate x.
fn image_ratio(x: f32) -> f32 {
    var r = 1.0;
    for (var n = 1u; n <= IMAGES; n++) {
        let nl = f32(n) * params.side;
        r += exp2(-nl * (nl + 2.0 * x)) + exp2(-nl * (nl - 2.0 * x));
    }
    return r;
}

// The periodised kernel over the minimum-image one, a product over the d real coordinates.
fn image_factor(j: u32) -> f32 {
    var f = 1.0;
    for (var p = 0u; p < P; p++) {
        var d = diff(j, p);
        if FIXED {
            d *= params.unit;
        }
        for (var c = 0u; c < 4u; c++) {
            if p * 4u + c < D {
                f *= image_ratio(d[c]);
            }
        }
    }
    return f;
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    if lid == 0u {
        halt = control[C_HALTED];
    }
    if workgroupUniformLoad(&halt) != RUNNING {
        return;
    }
    var group = group_index(wid, nwg);
    var chunk = 0u;
    var begin = 0u;
    var end = params.n_sources;
    if params.chunk_len != 0u {
        chunk = group / params.target_groups;
        group -= chunk * params.target_groups;
        begin = chunk * params.chunk_len;
        end = min(begin + params.chunk_len, params.n_sources);
        // The grid's spare workgroups (a 2-D grid is a whole rectangle); uniform in the workgroup.
        if begin >= params.n_sources {
            return;
        }
    }
    let t = group * WG + lid;
    let live = t < params.n_targets;
    var m = SENTINEL;
    if live {
        for (var p = 0u; p < P; p++) {
            tgt[p] = targets[t * P + p];
        }
        m = bitcast<f32>(tgt[P - 1u].w);
    }
    var acc = vec4<f32>(0.0);
    for (var base = begin; base < end; base += WG) {
        let s = base + lid;
        if s < end {
            for (var p = 0u; p < P; p++) {
                tile[lid * P + p] = sources[s * P + p];
            }
        } else {
            // Padding: zero coordinates and no coefficient, so it adds exp2(SENTINEL - m) = 0.
            for (var p = 0u; p < P; p++) {
                tile[lid * P + p] = vec4<u32>(0u);
            }
            tile[lid * P + P - 1u].w = bitcast<u32>(SENTINEL);
        }
        workgroupBarrier();
        for (var j = 0u; j < WG; j += 4u) {
            let e = vec4<f32>(exponent(j), exponent(j + 1u), exponent(j + 2u), exponent(j + 3u));
            let emax = max(max(e.x, e.y), max(e.z, e.w));
            if emax > m + RESCALE {
                acc *= exp2(m - emax);
                m = emax;
            }
            var term = exp2(e - vec4<f32>(m));
            if IMAGES > 0u {
                term *= vec4<f32>(image_factor(j), image_factor(j + 1u), image_factor(j + 2u), image_factor(j + 3u));
            }
            acc += term;
        }
        workgroupBarrier();
    }
    if live {
        let total = acc.x + acc.y + acc.z + acc.w;
        if params.chunk_len != 0u {
            let at = 2u * (chunk * params.n_targets + t);
            out[at] = m;
            out[at + 1u] = total;
        } else {
            out[t] = (m + log2(total)) * LN2 + params.log_norm;
        }
    }
}
