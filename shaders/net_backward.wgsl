// The network's δF/δm at each target x = (a, b, c): −(1/M) Σ_k r_k φ(x, z_k) + λ/2 |x|², written
// as l1, and the penalty λ/2 |x|² alone as l2, F's per-particle part (CPU twin:
// energy::net_backward). Data points are staged through a
// workgroup tile; each tile is summed before it joins the running total, in a fixed order.

struct NetParams {
    n: u32,
    m: u32,
    _pad0: u32,
    _pad1: u32,
    inv_m: f32,
    half_penalty: f32,
    _pad2: f32,
    _pad3: f32,
}

@group(0) @binding(0) var<uniform> params: NetParams;
// Per target, P vec4: (a, b) in the first d − 1 lanes, zeros, c in the last lane.
@group(0) @binding(1) var<storage, read> targets: array<vec4<f32>>;
// Per data point, P vec4: (z, 1) in the first d − 1 lanes, zeros after.
@group(0) @binding(2) var<storage, read> inputs: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> resid: array<f32>;
@group(0) @binding(4) var<storage, read_write> l1: array<f32>;
@group(0) @binding(5) var<storage, read_write> l2: array<f32>;
@group(0) @binding(6) var<storage, read> control: array<u32>;

var<workgroup> tile: array<vec4<f32>, WG * P>;
var<workgroup> tile_r: array<f32, WG>;
var<workgroup> halt: u32;
var<private> x: array<vec4<f32>, P>;

fn pull(j: u32) -> f32 {
    var pre = 0.0;
    for (var p = 0u; p < P; p++) {
        pre += dot(x[p], tile[j * P + p]);
    }
    return tile_r[j] * tanh_(pre);
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
    let i = group_index(wid, nwg) * WG + lid;
    let live = i < params.n;
    var norm2 = 0.0;
    for (var p = 0u; p < P; p++) {
        x[p] = vec4<f32>(0.0);
        if live {
            x[p] = targets[i * P + p];
        }
        norm2 += dot(x[p], x[p]);
    }
    var total = 0.0;
    for (var base = 0u; base < params.m; base += WG) {
        let k = base + lid;
        if k < params.m {
            for (var p = 0u; p < P; p++) {
                tile[lid * P + p] = inputs[k * P + p];
            }
            tile_r[lid] = resid[k];
        } else {
            for (var p = 0u; p < P; p++) {
                tile[lid * P + p] = vec4<f32>(0.0);
            }
            tile_r[lid] = 0.0;
        }
        workgroupBarrier();
        var acc = vec4<f32>(0.0);
        for (var j = 0u; j < WG; j += 4u) {
            acc += vec4<f32>(pull(j), pull(j + 1u), pull(j + 2u), pull(j + 3u));
        }
        total += (acc.x + acc.y) + (acc.z + acc.w);
        workgroupBarrier();
    }
    if live {
        let c = x[P - 1u].w;
        let penalty = params.half_penalty * norm2;
        l1[i] = -c * total * params.inv_m + penalty;
        l2[i] = penalty;
    }
}
