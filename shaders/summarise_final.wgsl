// Second level of the `summarise` reduction: one workgroup merges the partials in a fixed order
// and writes the stats that the updates and the host read; in a step, its first invocation then
// runs `step_control` (bindings 0–1, the text before this one) on them.

struct FinalParams {
    groups: u32,
    // 1 in a step (run the step control), 0 in an evaluation alone.
    step: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(2) var<uniform> fin: FinalParams;
@group(0) @binding(3) var<storage, read> partials: array<Partial>;
@group(0) @binding(4) var<storage, read_write> stats: array<u32>;
@group(0) @binding(5) var<storage, read_write> control: array<u32>;

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
    for (var j = lid; j < fin.groups; j += WG) {
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
        if fin.step != 0u {
            step_control();
        }
    }
}
