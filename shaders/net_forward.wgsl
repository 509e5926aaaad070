// The network's output at the data points, first level: partial_c(z_k) = Σ_{i in chunk c} w_i φ(x_i, z_k)
// with φ(x, z) = c · tanh(a·z + b), x = (a, b, c) (CPU twin: energy::net_forward;
// `net_residuals` finishes it).
//
// The grid is target_groups × chunks: each invocation owns one data point, each workgroup one
// chunk of particles, staged through a workgroup tile. Each tile's four accumulators are summed
// before they join the running total, so rounding grows with WG + N/WG rather than N, and the
// order is fixed: the result depends only on N, M and the device.

struct NetParams {
    n: u32,
    m: u32,
    // Particles per chunk (a multiple of WG).
    chunk_len: u32,
    // Workgroups per chunk along the data points.
    target_groups: u32,
    inv_m: f32,
    half_penalty: f32,
    _pad0: f32,
    _pad1: f32,
}

@group(0) @binding(0) var<uniform> params: NetParams;
@group(0) @binding(1) var<storage, read> lw: array<f32>;
// Per particle, P vec4: (a, b) in the first d − 1 lanes, zeros, c in the last lane.
@group(0) @binding(2) var<storage, read> neurons: array<vec4<f32>>;
// Per data point, P vec4: (z, 1) in the first d − 1 lanes, zeros after (the last lane too, so
// that c never enters a·z + b).
@group(0) @binding(3) var<storage, read> inputs: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;
@group(0) @binding(5) var<storage, read> control: array<u32>;

var<workgroup> tile: array<vec4<f32>, WG * P>;
// w_j c_j of the tile's particles.
var<workgroup> tile_wc: array<f32, WG>;
var<workgroup> halt: u32;
var<private> z: array<vec4<f32>, P>;

fn neuron(j: u32) -> f32 {
    var pre = 0.0;
    for (var p = 0u; p < P; p++) {
        pre += dot(tile[j * P + p], z[p]);
    }
    return tile_wc[j] * tanh_(pre);
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
    let chunk = group / params.target_groups;
    group -= chunk * params.target_groups;
    let begin = chunk * params.chunk_len;
    if begin >= params.n {
        return;
    }
    let end = min(begin + params.chunk_len, params.n);
    let k = group * WG + lid;
    let live = k < params.m;
    for (var p = 0u; p < P; p++) {
        z[p] = vec4<f32>(0.0);
        if live {
            z[p] = inputs[k * P + p];
        }
    }
    var total = 0.0;
    for (var base = begin; base < end; base += WG) {
        let s = base + lid;
        if s < end {
            for (var p = 0u; p < P; p++) {
                tile[lid * P + p] = neurons[s * P + p];
            }
            tile_wc[lid] = exp(lw[s]) * neurons[s * P + P - 1u].w;
        } else {
            for (var p = 0u; p < P; p++) {
                tile[lid * P + p] = vec4<f32>(0.0);
            }
            tile_wc[lid] = 0.0;
        }
        workgroupBarrier();
        var acc = vec4<f32>(0.0);
        for (var j = 0u; j < WG; j += 4u) {
            acc += vec4<f32>(neuron(j), neuron(j + 1u), neuron(j + 2u), neuron(j + 3u));
        }
        total += (acc.x + acc.y) + (acc.z + acc.w);
        workgroupBarrier();
    }
    if live {
        partials[chunk * params.m + k] = total;
    }
}
