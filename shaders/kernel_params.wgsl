// The uniform of the kernel-sum shaders (log_kernel_sum, log_kernel_sum_cells, cell_mass,
// cell_bound), concatenated before each (mirrored by `KernelParams` on the host).

struct KernelParams {
    n_targets: u32,
    n_sources: u32,
    // Sources per chunk (a multiple of WG), or 0 for one pass over all sources.
    chunk_len: u32,
    // Workgroups per chunk along the targets (split sources only).
    target_groups: u32,
    // Natural-log constant factor of the kernel, added to the result.
    log_norm: f32,
    // Torus side in tile units (0 on R^d).
    side: f32,
    // Scaled length of one tile unit: 1 for f32 coordinates, 2^16 fixed-point steps when FIXED.
    unit: f32,
    // unit², the factor from |tile difference|² to the kernel's exponent.
    unit2: f32,
    // 1.5·2^23, the rounding constant of `exp2_fma`. It comes from the host, not a literal, so
    // that no compiler can fold (x + R) − R into x: Mesa's NIR does when R is a constant.
    rounder: f32,
    // Cell sums only (log_kernel_sum_cells.wgsl; zero otherwise): log2 of the tolerance δ, the
    // largest allowed truncation bound, the number of cells and of target blocks, the slot of the
    // truncation buffer that this sum's bound goes to, and the cells per coordinate.
    log2_tolerance: f32,
    max_error: f32,
    n_cells: u32,
    n_blocks: u32,
    slot: u32,
    // 2^(−2L²) for scaled L, the ratio between successive images' factors (see `image_ratio`).
    image_decay: f32,
    pad0: u32,
    counts: vec4<u32>,
}

@group(0) @binding(0) var<uniform> params: KernelParams;
