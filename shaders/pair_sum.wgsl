// l1_t = Σ_j w_j W(x_t, X_j) and l2_t = ½ l1_t for every target t, with the user's W
// (`pair_kernel`, spliced in after the constants): a pair kernel's δF/δm and its share of F,
// added by `energy_accumulate` (CPU twin: energy::pair_sum). Sources and their weights are
// staged through a workgroup tile; coordinates are the raw ones, d per point.

struct Params {
    n_targets: u32,
    n_sources: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> targets: array<f32>;
@group(0) @binding(2) var<storage, read> sources: array<f32>;
@group(0) @binding(3) var<storage, read> lw: array<f32>;
@group(0) @binding(4) var<storage, read_write> l1: array<f32>;
@group(0) @binding(5) var<storage, read_write> l2: array<f32>;
@group(0) @binding(6) var<storage, read> control: array<u32>;

var<workgroup> tile: array<f32, WG * D>;
var<workgroup> tile_w: array<f32, WG>;
var<workgroup> halt: u32;

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
    let t = group_index(wid, nwg) * WG + lid;
    var x: array<f32, D>;
    if t < params.n_targets {
        for (var k = 0u; k < D; k++) {
            x[k] = targets[t * D + k];
        }
    }
    var acc = 0.0;
    for (var base = 0u; base < params.n_sources; base += WG) {
        let s = base + lid;
        var w = 0.0;
        for (var k = 0u; k < D; k++) {
            tile[lid * D + k] = select(0.0, sources[min(s, params.n_sources - 1u) * D + k], s < params.n_sources);
        }
        if s < params.n_sources {
            w = exp(lw[s]);
        }
        tile_w[lid] = w;
        workgroupBarrier();
        let count = min(WG, params.n_sources - base);
        for (var j = 0u; j < count; j++) {
            var y: array<f32, D>;
            for (var k = 0u; k < D; k++) {
                y[k] = tile[j * D + k];
            }
            acc += tile_w[j] * pair_kernel(x, y);
        }
        workgroupBarrier();
    }
    if t < params.n_targets {
        l1[t] = acc;
        l2[t] = 0.5 * acc;
    }
}
