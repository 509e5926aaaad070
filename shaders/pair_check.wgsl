// out_k = W(a_k, b_k) for pairs of points, with the user's W (`pair_kernel`): compared with its
// Rust twin (PairKernel::value, in f64) when an engine is built, so a WGSL function that does not
// compute what its twin does is an error before any step.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let k = group_index(wid, nwg) * WG + lid;
    if k >= params.n {
        return;
    }
    var x: array<f32, D>;
    var y: array<f32, D>;
    for (var i = 0u; i < D; i++) {
        x[i] = a[k * D + i];
        y[i] = b[k * D + i];
    }
    out[k] = pair_kernel(x, y);
}
