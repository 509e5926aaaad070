// Second level of `net_forward`: f_m(z_k) = Σ_c partial_c(z_k) in chunk order, the residual
// r_k = y_k − f_m(z_k), and the data term r_k² / 2M of F (CPU twin:
// energy::net_residuals).

struct Params {
    m: u32,
    chunks: u32,
    // Where this term's entries start in the data-term buffer.
    offset: u32,
    _pad0: u32,
    inv_2m: f32,
    _pad1: f32,
    _pad2: f32,
    _pad3: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<f32>;
@group(0) @binding(3) var<storage, read_write> resid: array<f32>;
@group(0) @binding(4) var<storage, read_write> data_f: array<f32>;
@group(0) @binding(5) var<storage, read> control: array<u32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let k = group_index(wid, nwg) * WG + lid;
    if k >= params.m || control[C_HALTED] != RUNNING {
        return;
    }
    var f = 0.0;
    for (var c = 0u; c < params.chunks; c++) {
        f += partials[c * params.m + k];
    }
    let r = targets[k] - f;
    resid[k] = r;
    data_f[params.offset + k] = r * r * params.inv_2m;
}
