// log w_i −= log Σ_j w_j (CPU twin: stepper::normalise). Every
// workgroup merges the same partials in the same order, so all agree on the normaliser without a
// separate single-workgroup pass. Refreshes the packed sources' coefficient.

struct Params {
    n: u32,
    groups: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> partials: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> lw: array<f32>;
@group(0) @binding(3) var<storage, read_write> src: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> control: array<atomic<u32>>;

var<workgroup> sh: array<vec2<f32>, WG>;
var<workgroup> halt: u32;

fn lse_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let m = max(a.x, b.x);
    return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    if lid == 0u {
        halt = atomicLoad(&control[C_HALTED]);
    }
    if workgroupUniformLoad(&halt) != RUNNING {
        return;
    }
    var acc = vec2<f32>(SENTINEL, 0.0);
    for (var j = lid; j < params.groups; j += WG) {
        acc = lse_merge(acc, partials[j]);
    }
    sh[lid] = acc;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            sh[lid] = lse_merge(sh[lid], sh[lid + stride]);
        }
        workgroupBarrier();
    }
    let z = sh[0].x + log(sh[0].y);
    let i = group_index(wid, nwg) * WG + lid;
    if i < params.n {
        let l = lw[i] - z;
        lw[i] = l;
        src[i * P + P - 1u].w = bitcast<u32>(l * LOG2E);
        if !is_finite(l) && !(l < 0.0) {
            atomicMin(&control[C_BAD_LOG_WEIGHT], i);
        }
    }
}
