// a(μᴺ, x) = g(x) − Σ_j w_j g_j / Σ_j w_j at points x other than the particles (CPU twin:
// engine::cpu::CpuEngine::rates_at): g(x) from `divergence_derivative` (bindings 0–9, the text
// before this one) on the kernel sums at the points, the mean from the particles' evaluation.

@group(0) @binding(10) var<storage, read> stats: array<u32>;
@group(0) @binding(11) var<storage, read_write> rates: array<f32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= div.n {
        return;
    }
    rates[i] = divergence_derivative(i).x - bitcast<f32>(stats[S_MEAN]);
}
