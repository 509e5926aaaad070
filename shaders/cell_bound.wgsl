// The largest relative truncation bound of a cell sum over its targets, and its target (CPU twin:
// engine::cells::cell_bound, per target): one workgroup merges the cells' masses into
// the total, then per block of log_kernel_sum_cells
//
//     bound = δ · (total − near) / least value      (K(0) = 1 in the values' units)
//
// and the largest over the blocks (the first target on ties) goes to truncation[2 slot ..]. A
// bound above max_error halts the device loop with ERR_CUTOFF, the bound and its target, which
// the host turns into the CPU engine's `kernel.cutoff` error.

@group(0) @binding(1) var<storage, read> cell_mass: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> block_out: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> truncation: array<u32>;
@group(0) @binding(4) var<storage, read_write> control: array<u32>;

var<workgroup> halt: u32;
var<workgroup> mass: array<vec2<f32>, WG>;
var<workgroup> best: array<f32, WG>;
var<workgroup> best_target: array<u32, WG>;

// log2-domain (m, Σ) pairs added.
fn merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let m = max(a.x, b.x);
    return vec2<f32>(m, a.y * exp2(a.x - m) + b.y * exp2(b.x - m));
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    if lid == 0u {
        halt = control[C_HALTED];
    }
    if workgroupUniformLoad(&halt) != RUNNING {
        return;
    }
    var a = vec2<f32>(SENTINEL, 0.0);
    for (var c = lid; c < params.n_cells; c += WG) {
        a = merge(a, cell_mass[c]);
    }
    mass[lid] = a;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            mass[lid] = merge(mass[lid], mass[lid + stride]);
        }
        workgroupBarrier();
    }
    let total = mass[0].x + log2(mass[0].y);
    var bound = 0.0;
    var arg = NONE;
    for (var k = lid; k < params.n_blocks; k += WG) {
        let o = block_out[k];
        let near = bitcast<vec2<f32>>(o.xy);
        let n = near.x + log2(near.y);
        // log2(total − near) without cancellation beyond f32's; no mass outside: no bound.
        let far = total + log2(1.0 - exp2(n - total));
        let b = select(exp2(params.log2_tolerance + far - bitcast<f32>(o.z)), 0.0, n >= total);
        if b > bound || (b == bound && o.w < arg) {
            bound = b;
            arg = o.w;
        }
    }
    best[lid] = bound;
    best_target[lid] = arg;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            let b = best[lid + stride];
            let t = best_target[lid + stride];
            if b > best[lid] || (b == best[lid] && t < best_target[lid]) {
                best[lid] = b;
                best_target[lid] = t;
            }
        }
        workgroupBarrier();
    }
    if lid == 0u {
        truncation[2u * params.slot] = bitcast<u32>(best[0]);
        truncation[2u * params.slot + 1u] = best_target[0];
        if !(best[0] <= params.max_error) {
            control[C_HALTED] = ERR_CUTOFF;
            control[C_PARTICLE] = best_target[0];
            control[C_VALUE] = bitcast<u32>(best[0]);
        }
    }
}
