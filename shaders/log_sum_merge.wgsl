// Combines the per-chunk partials of a split-source `log_kernel_sum` into its result:
// out_t = log Σ_c acc_c 2^(m_c) (natural log, plus the kernel's constant), merging the chunks in
// index order so the result does not depend on scheduling (CPU twin: engine::cpu::log_sum_merge,
// which also merges the CPU's blocks of sources).

struct MergeParams {
    n_targets: u32,
    chunks: u32,
    _pad0: u32,
    log_norm: f32,
}

@group(0) @binding(0) var<uniform> params: MergeParams;
// (m, Σ exp2(e - m)) per chunk and target, chunk-major.
@group(0) @binding(1) var<storage, read> partials: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> control: array<u32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = group_index(wid, nwg) * WG + lid;
    if t >= params.n_targets || control[C_HALTED] != RUNNING {
        return;
    }
    var acc = partials[t];
    for (var c = 1u; c < params.chunks; c++) {
        let b = partials[c * params.n_targets + t];
        let m = max(acc.x, b.x);
        acc = vec2<f32>(m, acc.y * exp2(acc.x - m) + b.y * exp2(b.x - m));
    }
    out[t] = (acc.x + log2(acc.y)) * LN2 + params.log_norm;
}
