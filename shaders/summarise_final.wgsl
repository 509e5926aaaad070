// Second level of the `summarise` reduction: one workgroup merges the partials in a fixed order
// and writes the stats that the step control, the updates and the host read.

struct SumParams {
    n: u32,
    groups: u32,
    m_data: u32,
    unit: f32,
}

@group(0) @binding(0) var<uniform> params: SumParams;
@group(0) @binding(1) var<storage, read> partials: array<Partial>;
@group(0) @binding(2) var<storage, read_write> stats: array<u32>;
@group(0) @binding(3) var<storage, read> control: array<u32>;

var<workgroup> sh: array<Partial, WG>;
var<workgroup> halt: u32;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    if lid == 0u {
        halt = control[C_HALTED];
    }
    if workgroupUniformLoad(&halt) != RUNNING {
        return;
    }
    var acc = partial_empty();
    for (var j = lid; j < params.groups; j += WG) {
        acc = partial_merge(acc, partials[j]);
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
        let r = sh[0];
        let mean = r.sums[1] / r.sums[0];
        stats[S_MASS] = bitcast<u32>(r.sums[0]);
        stats[S_WG] = bitcast<u32>(r.sums[1]);
        stats[S_W2] = bitcast<u32>(r.sums[2]);
        stats[S_WDF] = bitcast<u32>(r.sums[3]);
        stats[S_WE] = bitcast<u32>(r.sums[4]);
        stats[S_FDATA] = bitcast<u32>(r.sums[5]);
        stats[S_MEAN] = bitcast<u32>(mean);
        stats[S_MAX_G] = bitcast<u32>(r.max_g);
        stats[S_MIN_G] = bitcast<u32>(-r.max_neg_g);
        stats[S_MAX_LW] = bitcast<u32>(r.max_lw);
        stats[S_ARGMAX] = r.argmax;
        stats[S_BAD_RATE] = r.bad;
        stats[S_MAX_A] = bitcast<u32>(r.max_g - mean);
        stats[S_MAX_ABS_A] = bitcast<u32>(max(r.max_g - mean, mean + r.max_neg_g));
        for (var k = 0u; k < 2u * D; k++) {
            stats[S_MOMENTS + k] = bitcast<u32>(r.sums[6u + k]);
        }
    }
}
