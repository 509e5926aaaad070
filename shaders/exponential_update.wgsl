// log w_i −= h a_i (CPU twin: the first loop of stepper::exponential_update), and the first level
// of the log-sum-exp that `normalise` divides by: each workgroup leaves (max, Σ exp(l − max)).

struct Params {
    n: u32,
    groups: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> stats: array<u32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> lw: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> control: array<atomic<u32>>;

var<workgroup> sh: array<vec2<f32>, WG>;
var<workgroup> halt: u32;

fn lse_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let m = max(a.x, b.x);
    return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if lid == 0u {
        halt = atomicLoad(&control[C_HALTED]);
    }
    if workgroupUniformLoad(&halt) != RUNNING {
        return;
    }
    let h = bitcast<f32>(atomicLoad(&control[C_STEP_H]));
    let mean = bitcast<f32>(stats[S_MEAN]);
    var acc = vec2<f32>(SENTINEL, 0.0);
    for (var i = wid.x * WG + lid; i < params.n; i += params.groups * WG) {
        let l = lw[i] - h * (g[i] - mean);
        lw[i] = l;
        acc = lse_merge(acc, vec2<f32>(l, 1.0));
    }
    sh[lid] = acc;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            sh[lid] = lse_merge(sh[lid], sh[lid + stride]);
        }
        workgroupBarrier();
    }
    if lid == 0u {
        partials[wid.x] = sh[0];
    }
}
