// Variant C's second-pass coefficients, packed with the positions: log w_j − log S_j (KL) or
// log w_j − log π_j (χ²), so that the next kernel sum gives Σ_j w_j K(x_j, x_i) / S_j (or / π_j).
// CPU twin: variant::blob_coefficients.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> lw: array<f32>;
@group(0) @binding(2) var<storage, read> logs: array<f32>;
@group(0) @binding(3) var<storage, read> fixed: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> pos: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> packed: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> control: array<u32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= params.n || control[C_HALTED] != RUNNING {
        return;
    }
    var c = lw[i];
    if KL {
        c -= logs[i];
    } else {
        c -= fixed[i].y;
    }
    for (var p = 0u; p < P; p++) {
        packed[i * P + p] = pos[i * P + p];
    }
    packed[i * P + P - 1u].w = bitcast<u32>(c * LOG2E);
}
