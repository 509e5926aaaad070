// Each cell's mass in log2 units, (m, Σ exp2(c_s − m)) over its sources s with m their largest
// coefficient ((SENTINEL, 0) for an empty cell): once per evaluation, so that a cell sum's
// neighbourhood mass costs 3^d merges per block of targets rather than an exp2 per pair (CPU
// twin: engine::cells::cell_mass). `grid` is log_kernel_sum_cells's.

@group(0) @binding(1) var<storage, read> sources: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> grid: array<u32>;
@group(0) @binding(3) var<storage, read_write> cell_mass: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> control: array<u32>;

fn coefficient(s: u32) -> f32 {
    return bitcast<f32>(sources[s * P + P - 1u].w);
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c = group_index(wid, nwg) * WG + lid;
    if c >= params.n_cells || control[C_HALTED] != RUNNING {
        return;
    }
    let order_at = params.n_cells + 1u;
    let begin = order_at + grid[c];
    let end = order_at + grid[c + 1u];
    var top = SENTINEL;
    for (var i = begin; i < end; i++) {
        top = max(top, coefficient(grid[i]));
    }
    var sum = 0.0;
    for (var i = begin; i < end; i++) {
        sum += exp2(coefficient(grid[i]) - top);
    }
    cell_mass[c] = vec2<f32>(top, sum);
}
