// Variants D and D′: second-pass coefficients at the quadrature nodes, packed with the nodes:
// log w_j + log ω_q − log (K_ε μᴺ)(y_jq) (KL) or − log π(y_jq) (χ²). CPU twin:
// variant::node_coefficients.

struct Params {
    // N·Q nodes.
    n_nodes: u32,
    // Q.
    q: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> lw: array<f32>;
@group(0) @binding(2) var<storage, read> node_logs: array<f32>;
@group(0) @binding(3) var<storage, read> node_ref: array<f32>;
@group(0) @binding(4) var<storage, read> quad: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read> nodes: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read_write> packed: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read> control: array<u32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let jq = group_index(wid, nwg) * WG + lid;
    if jq >= params.n_nodes || control[C_HALTED] != RUNNING {
        return;
    }
    let j = jq / params.q;
    let q = jq - j * params.q;
    var c = lw[j] + quad[q].y;
    if KL {
        c -= node_logs[jq];
    } else {
        c -= node_ref[jq];
    }
    for (var p = 0u; p < P; p++) {
        packed[jq * P + p] = nodes[jq * P + p];
    }
    packed[jq * P + P - 1u].w = bitcast<u32>(c * LOG2E);
}
