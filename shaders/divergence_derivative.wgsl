// h_i for the model's variant and divergence, then g_i = δF_i + σ h_i (CPU twin:
// engine::cpu::divergence_derivative and the first line of engine::cpu::rates). The variant's part
// is its own file (shaders/variant_*.wgsl, CPU twins in the `variant` modules).
//
// A function, not a pass: `summarise` calls it for every particle (so a step needs no separate
// element-wise dispatch and g's integrand never goes through memory), and `rates_at` for other
// points. Its bindings are 0–9 of both. Also returns e_i, the integrand of the divergence's
// value: D_ε(μᴺ) = Σ_i w_i e_i + c with c = -1 for χ² in C, D, D′ and the exact variant (added on
// the host), 0 otherwise.

struct DivParams {
    n: u32,
    // Quadrature nodes per particle (D, D′).
    q: u32,
    // 1 when σ > 0 (the divergence term is present).
    has_divergence: u32,
    // 0: `logs` holds log (K_ε μᴺ)(X_i). k > 0: it holds the k per-chunk partials of a split
    // `log_kernel_sum`, merged here as `log_sum_merge` would (A, B), which saves that dispatch.
    chunks: u32,
    sigma: f32,
    // log N, for the exact variant's density μ_t(X_i) = N w_i μ₀(X_i).
    ln_n: f32,
    // The kernel's log normalising constant, added to merged partials.
    log_norm: f32,
    _pad0: f32,
}

@group(0) @binding(0) var<uniform> div: DivParams;
@group(0) @binding(1) var<storage, read> lw: array<f32>;
// Per particle: (U, log π or log K_ε π, log μ₀, 0).
@group(0) @binding(2) var<storage, read> fixed: array<vec4<f32>>;
// log (K_ε μᴺ)(X_i) (A, B, C), or its chunks' (m, Σ exp2(e − m)) pairs, chunk-major (A, B).
@group(0) @binding(3) var<storage, read> logs: array<f32>;
// The second pass: log Σ_j … K(·, X_i) (C, D, D′).
@group(0) @binding(4) var<storage, read> logs2: array<f32>;
// log (K_ε μᴺ)(y_iq) and log π(y_iq) (or log K_ε π) at the quadrature nodes (D, D′).
@group(0) @binding(5) var<storage, read> node_logs: array<f32>;
@group(0) @binding(6) var<storage, read> node_ref: array<f32>;
// (ω_q, log ω_q).
@group(0) @binding(7) var<storage, read> quad: array<vec2<f32>>;
// Per particle: (δF, f), the energies' total (see energy_accumulate.wgsl).
@group(0) @binding(8) var<storage, read> energy: array<vec2<f32>>;
@group(0) @binding(9) var<storage, read> control: array<u32>;

// δD/δm from the log density ratio: log r (KL) or 2 r (χ²).
fn finish(log_ratio: f32) -> f32 {
    if KL {
        return log_ratio;
    }
    return 2.0 * exp(log_ratio);
}

// log (K_ε μᴺ)(X_i), merging the chunks in index order when the sum was split.
fn log_sum_at(i: u32) -> f32 {
    if div.chunks == 0u {
        return logs[i];
    }
    var acc = vec2<f32>(logs[2u * i], logs[2u * i + 1u]);
    for (var c = 1u; c < div.chunks; c++) {
        let k = 2u * (c * div.n + i);
        let b = vec2<f32>(logs[k], logs[k + 1u]);
        let m = max(acc.x, b.x);
        acc = vec2<f32>(m, acc.y * exp2(acc.x - m) + b.y * exp2(b.x - m));
    }
    return (acc.x + log2(acc.y)) * LN2 + div.log_norm;
}

// The variant's `fn variant_h(i: u32, f: vec4<f32>) -> vec2<f32>` (h_i, e_i) from
// shaders/variant_*.wgsl, inserted here by the host (see `kernels::source`):
//#variant_h

// (g_i, e_i) of point i.
fn divergence_derivative(i: u32) -> vec2<f32> {
    var he = vec2<f32>(0.0, 0.0);
    if div.has_divergence != 0u {
        he = variant_h(i, fixed[i]);
    }
    return vec2<f32>(energy[i].x + div.sigma * he.x, he.y);
}
