// out_t = Σ_s w_s exp2(-|x_t - x_s|^2) for every point t (CPU twin:
// engine::cpu::minimal_kernel_sum). Not used by any engine: it is the yardstick of `frflow bench`,
// the least work a Gaussian kernel sum can do on this device (DESIGN.md, "Facts measured on real
// hardware"): points as P vec4<f32> each, coordinates pre-scaled, the weight in the last lane;
// a workgroup tile of sources; four sources per step into independent accumulators; one exp2 and
// one FMA per pair; no log-domain shift, no minimum image, no periodic images.

struct MinimalParams {
    n: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> params: MinimalParams;
@group(0) @binding(1) var<storage, read> points: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> tile: array<vec4<f32>, WG * P>;
var<private> tgt: array<vec4<f32>, P>;
var<private> acc: vec4<f32>;

// |target − tile[j]|² over the real coordinates.
fn dist2(j: u32) -> f32 {
    var s = 0.0;
    for (var p = 0u; p < P; p++) {
        s += norm2(tgt[p] - tile[j * P + p], select(4u, LAST, p == P - 1u));
    }
    return s;
}

// Adds tile entries j .. j + 3 to the accumulators (named as in kernel_pair.wgsl, so that
// `tests/kernel_op_count.rs` counts this loop as the reference for the others).
fn accumulate(j: u32) {
    let e = vec4<f32>(dist2(j), dist2(j + 1u), dist2(j + 2u), dist2(j + 3u));
    let w = vec4<f32>(tile[j * P + P - 1u].w, tile[(j + 1u) * P + P - 1u].w, tile[(j + 2u) * P + P - 1u].w,
        tile[(j + 3u) * P + P - 1u].w);
    acc = fma(w, exp2(-e), acc);
}

// Adds the staged tile to the accumulators.
fn sum_tile() {
    for (var j = 0u; j < WG; j += 4u) {
        accumulate(j);
    }
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = group_index(wid, nwg) * WG + lid;
    let live = t < params.n;
    if live {
        for (var p = 0u; p < P; p++) {
            tgt[p] = points[t * P + p];
        }
    }
    acc = vec4<f32>(0.0);
    for (var base = 0u; base < params.n; base += WG) {
        let s = base + lid;
        for (var p = 0u; p < P; p++) {
            // Padding: zero weight.
            tile[lid * P + p] = select(vec4<f32>(0.0), points[min(s, params.n - 1u) * P + p], s < params.n);
        }
        workgroupBarrier();
        sum_tile();
        workgroupBarrier();
    }
    if live {
        out[t] = acc.x + acc.y + acc.z + acc.w;
    }
}
