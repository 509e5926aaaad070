// out_t = log Σ_s exp(c_s) K(t, y_s) for every target t (CPU twin: engine::cpu::log_kernel_sum),
// over all pairs. The pair loop (tile, accumulation, cost per pair) is kernel_pair.wgsl's.
//
// Underflow and overflow: see kernel_pair.wgsl.
//
// Split sources (chunk_len > 0): when there are few targets (data points, a small reference
// system) one workgroup per target tile would leave most of a GPU idle, so the grid is
// target_groups × chunks and each workgroup sums one chunk of chunk_len sources. It then writes
// the pair (m, Σ exp2(e - m)) in log2 units to out[2 (chunk · n_targets + t)] and
// `log_sum_merge` combines the chunks in a fixed order. A chunk without the self term may
// underflow to 0 against a self-term shift; it is then below 2^-126 of the total, which
// contains the self term.

@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> control: array<u32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    if lid == 0u {
        halt = control[C_HALTED];
    }
    if workgroupUniformLoad(&halt) != RUNNING {
        return;
    }
    var group = group_index(wid, nwg);
    var chunk = 0u;
    var begin = 0u;
    var end = params.n_sources;
    if params.chunk_len != 0u {
        chunk = group / params.target_groups;
        group -= chunk * params.target_groups;
        begin = chunk * params.chunk_len;
        end = min(begin + params.chunk_len, params.n_sources);
        // The grid's spare workgroups (a 2-D grid is a whole rectangle); uniform in the workgroup.
        if begin >= params.n_sources {
            return;
        }
    }
    let t = group * WG + lid;
    let live = t < params.n_targets;
    // An idle invocation (no target) gets a shift that no term comes near, so that it never
    // makes `sum_tile` redo a tile.
    m = -SENTINEL;
    acc = vec4<f32>(0.0);
    if live {
        m = load_target(t);
    }
    for (var base = begin; base < end; base += WG) {
        let s = base + lid;
        if s < end {
            stage(lid, s);
        } else {
            pad(lid);
        }
        workgroupBarrier();
        sum_tile();
        workgroupBarrier();
    }
    if live {
        let total = acc.x + acc.y + acc.z + acc.w;
        if params.chunk_len != 0u {
            let at = 2u * (chunk * params.n_targets + t);
            out[at] = m;
            out[at + 1u] = total;
        } else {
            out[t] = (m + log2(total)) * LN2 + params.log_norm;
        }
    }
}
