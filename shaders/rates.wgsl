// a_i = g_i − Σ_j w_j g_j / Σ_j w_j (CPU twin: engine::cpu::rates), for reading the rates back.
// The updates compute the same difference on the fly instead of storing a.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> stats: array<u32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> a: array<f32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= params.n {
        return;
    }
    a[i] = g[i] - bitcast<f32>(stats[S_MEAN]);
}
