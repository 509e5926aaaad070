// Writes log w_i (in log2 units) into the coefficient slot of a packed copy of the particles, so
// that a kernel of another width (an interaction, MMD or NPMLE term) sums against the current
// weights. The coordinates were packed once on the host. (CPU twin: the `lw` argument that
// the energy terms pass to each kernel sum.)

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> lw: array<f32>;
@group(0) @binding(2) var<storage, read_write> packed: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> control: array<u32>;

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
    packed[i * P + P - 1u].w = bitcast<u32>(lw[i] * LOG2E);
}
