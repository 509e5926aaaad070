// log w_i += log(1 − h a_i) (CPU twin: stepper::euler_update). Positivity was checked by
// step_control before this dispatch; a halted loop leaves the weights untouched. Also refreshes
// the packed sources' coefficient, so the next kernel sum needs no packing pass.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> stats: array<u32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> lw: array<f32>;
@group(0) @binding(4) var<storage, read_write> src: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> control: array<atomic<u32>>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= params.n || atomicLoad(&control[C_HALTED]) != RUNNING {
        return;
    }
    let h = bitcast<f32>(atomicLoad(&control[C_STEP_H]));
    let a = g[i] - bitcast<f32>(stats[S_MEAN]);
    let l = lw[i] + log1p_(-h * a);
    lw[i] = l;
    src[i * P + P - 1u].w = bitcast<u32>(l * LOG2E);
    // NaN or +inf (−inf is a zero weight, which is allowed).
    if !is_finite(l) && !(l < 0.0) {
        atomicMin(&control[C_BAD_LOG_WEIGHT], i);
    }
}
