// out_t = log Σ_{s near t} exp(c_s) K(t, y_s) for every target t, over the sources in the 3^d
// cells around t's cell (CPU twin: engine::cells::log_kernel_sum_cells). The pair loop is
// kernel_pair.wgsl's: the same log-domain accumulation and one special-function op per pair.
//
// The host sorts the sources and the targets by cell once (positions never move) and keeps both
// orders in `grid`: [cell starts (n_cells + 1) | sources in cell order (n_sources) | targets in
// cell order (n_targets)]. Targets and sources stay in the caller's order in their buffers (the
// engine updates the sources' coefficients in place every step) and are read through these
// indices; results go to the caller's index. A workgroup takes one block of at most WG targets
// of one cell (`blocks`: the cell's coordinates, then (first, count) in the target order); its
// neighbour cells' sources are one concatenated stream, staged through the tile WG at a time.
//
// For the truncation bound (see cells.rs) the workgroup also merges the neighbour cells' masses
// (cell_mass.wgsl, once per evaluation) into the neighbourhood's mass, the same for all its
// targets, and writes (near mass, least value, its target) to block_out: the bound of a block is
// largest at its least value. cell_bound.wgsl then takes the largest bound over the blocks.

@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> control: array<u32>;
@group(0) @binding(5) var<storage, read> grid: array<u32>;
@group(0) @binding(6) var<storage, read> blocks: array<vec4<i32>>;
// (m, Σ exp2(c − m)) of each cell's coefficients, log2 units.
@group(0) @binding(7) var<storage, read> cell_mass: array<vec2<f32>>;
// Per block: the bits of (near m, near Σ, least value in log2 units without log_norm), its target.
@group(0) @binding(8) var<storage, read_write> block_out: array<vec4<u32>>;

// 3^4: the most neighbour cells (cells are used up to d = 4).
const MOST_NEAR: u32 = 81u;

// Per neighbour cell with sources: (offset, end) such that stream position s < end of this
// range is source grid[offset + s] of the order (u32 arithmetic wraps, so offset may "underflow").
var<workgroup> ranges: array<vec2<u32>, MOST_NEAR>;
var<workgroup> stream_len: u32;
var<workgroup> near_mass: vec2<f32>;
// Each invocation's value and target, for the block's least value.
var<workgroup> values: array<f32, WG>;
var<workgroup> value_targets: array<u32, WG>;

// Fills `ranges`, `stream_len` and `near_mass` for the cell at `centre` (one invocation).
fn neighbourhood(centre: vec4<i32>) {
    var near = 1u;
    for (var k = 0u; k < D; k++) {
        near *= 3u;
    }
    let order_at = params.n_cells + 1u;
    var count = 0u;
    var len = 0u;
    var nm = SENTINEL;
    var ns = 0.0;
    for (var code = 0u; code < near; code++) {
        var rest = code;
        var linear = 0u;
        var stride = 1u;
        var inside = true;
        for (var k = 0u; k < D; k++) {
            let n = i32(params.counts[k]);
            var c = centre[k] + i32(rest % 3u) - 1;
            rest /= 3u;
            if TORUS {
                c = select(select(c, c - n, c >= n), c + n, c < 0);
            } else if c < 0 || c >= n {
                inside = false;
            }
            linear += u32(c) * stride;
            stride *= params.counts[k];
        }
        if inside {
            let b = grid[linear];
            let e = grid[linear + 1u];
            if e > b {
                ranges[count] = vec2<u32>(order_at + b - len, len + e - b);
                len += e - b;
                count += 1u;
            }
            let cm = cell_mass[linear];
            let mm = max(nm, cm.x);
            ns = ns * exp2(nm - mm) + cm.y * exp2(cm.x - mm);
            nm = mm;
        }
    }
    stream_len = len;
    near_mass = vec2<f32>(nm, ns);
}

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
    let block = group_index(wid, nwg);
    // The grid's spare workgroups; uniform in the workgroup.
    if block >= params.n_blocks {
        return;
    }
    let span = blocks[2u * block + 1u];
    if lid == 0u {
        neighbourhood(blocks[2u * block]);
    }
    let len = workgroupUniformLoad(&stream_len);
    let live = lid < u32(span.y);
    var t = 0u;
    // An idle invocation (no target) gets a shift that no term comes near, so that it never
    // makes `sum_tile` redo a tile.
    m = -SENTINEL;
    acc = vec4<f32>(0.0);
    if live {
        t = grid[params.n_cells + 1u + params.n_sources + u32(span.x) + lid];
        m = load_target(t);
    }
    // This invocation's range in the stream; its positions only grow.
    var r = 0u;
    for (var base = 0u; base < len; base += WG) {
        let s = base + lid;
        if s < len {
            while s >= ranges[r].y {
                r++;
            }
            stage(lid, grid[ranges[r].x + s]);
        } else {
            pad(lid);
        }
        workgroupBarrier();
        sum_tile();
        workgroupBarrier();
    }
    // No near source at all (a target outside the particles' box): log2 0 = −inf, as on the CPU.
    let value = m + log2(acc.x + acc.y + acc.z + acc.w);
    if live {
        out[t] = value * LN2 + params.log_norm;
    }
    values[lid] = select(-SENTINEL, value, live);
    value_targets[lid] = t;
    workgroupBarrier();
    // The least value (the first such target on ties), serially: once per block, not per pair.
    if lid == 0u {
        var best = values[0];
        var best_t = value_targets[0];
        for (var i = 1u; i < WG; i++) {
            let v = values[i];
            if v < best || (v == best && value_targets[i] < best_t) {
                best = v;
                best_t = value_targets[i];
            }
        }
        block_out[block] = vec4<u32>(bitcast<vec2<u32>>(near_mass), bitcast<u32>(best), best_t);
    }
}
