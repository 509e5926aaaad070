// First level of the deterministic two-level reduction behind the diagnostics and the mean of g
// (CPU twin: engine::cpu::summarise and the weighted mean in engine::cpu::rates), and g itself:
// each particle's g_i and integrand come from `divergence_derivative` (bindings 0–9, the text
// before this one) and g_i is stored for the update and the step control.
//
// A fixed grid of `groups` workgroups (a function of N only) walks the particles with a grid
// stride; each invocation accumulates in index order, then the workgroup merges by a tree in
// workgroup memory. No float atomics, so the result depends only on N and the device.

struct SumParams {
    n: u32,
    groups: u32,
    // Entries of the data-term buffer (0 without network or NPMLE terms).
    m_data: u32,
    // Scaled length of one fixed-point step (FIXED only).
    unit: f32,
}

@group(0) @binding(10) var<uniform> params: SumParams;
@group(0) @binding(11) var<storage, read_write> g: array<f32>;
@group(0) @binding(12) var<storage, read> pos: array<vec4<u32>>;
@group(0) @binding(13) var<storage, read_write> partials: array<Partial>;
// F's terms per data point (r_k²/2M for a network, −log p_k / M for the NPMLE).
@group(0) @binding(14) var<storage, read> data_f: array<f32>;

var<workgroup> sh: array<Partial, WG>;
var<workgroup> halt: u32;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if lid == 0u {
        halt = control[C_HALTED];
    }
    if workgroupUniformLoad(&halt) != RUNNING {
        return;
    }
    var acc = partial_empty();
    for (var i = wid.x * WG + lid; i < params.n; i += params.groups * WG) {
        let ge = divergence_derivative(i);
        let gi = ge.x;
        g[i] = gi;
        if !is_finite(gi) {
            acc.bad = min(acc.bad, i);
            continue;
        }
        let l = lw[i];
        let w = exp(l);
        acc.sums[0] += w;
        acc.sums[1] += w * gi;
        acc.sums[2] += w * w;
        acc.sums[3] += w * energy[i].y;
        acc.sums[4] += w * ge.y;
        for (var k = 0u; k < D; k++) {
            // The scaled, centred coordinate (see log_kernel_sum.wgsl for the two layouts).
            let u = pos[i * P + k / 4u][k % 4u];
            var x = bitcast<f32>(u);
            if FIXED {
                x = f32(bitcast<i32>(u)) * params.unit;
            }
            acc.sums[6u + k] += w * x;
            acc.sums[6u + D + k] += w * x * x;
        }
        if gi > acc.max_g {
            acc.max_g = gi;
            acc.argmax = i;
        }
        acc.max_neg_g = max(acc.max_neg_g, -gi);
        acc.max_lw = max(acc.max_lw, l);
    }
    // The data terms, walked by the same grid.
    for (var k = wid.x * WG + lid; k < params.m_data; k += params.groups * WG) {
        acc.sums[5] += data_f[k];
    }
    sh[lid] = acc;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            sh[lid] = partial_merge(sh[lid], sh[lid + stride]);
        }
        workgroupBarrier();
    }
    if lid == 0u {
        partials[wid.x] = sh[0];
    }
}
