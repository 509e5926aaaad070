// The NPMLE's second-pass coefficients, packed with the observations: log of 1 / (M p(z_k)),
// so that the next kernel sum gives (1/M) Σ_k φ_s(z_k − x) / p(z_k); and the data term
// −log p(z_k) / M of F (CPU twin:
// energy::npmle_coefficients).

struct Params {
    m: u32,
    _unused: u32,
    // Where this term's entries start in the data-term buffer.
    offset: u32,
    _pad0: u32,
    ln_m: f32,
    inv_m: f32,
    _pad2: f32,
    _pad3: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
// log p(z_k).
@group(0) @binding(1) var<storage, read> log_p: array<f32>;
@group(0) @binding(2) var<storage, read_write> packed: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> data_f: array<f32>;
@group(0) @binding(4) var<storage, read> control: array<u32>;

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
    let lp = log_p[k];
    packed[k * P + P - 1u].w = bitcast<u32>((-lp - params.ln_m) * LOG2E);
    data_f[params.offset + k] = -lp * params.inv_m;
}
