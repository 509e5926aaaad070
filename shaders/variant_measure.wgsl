// Variants A and B (CPU twin: variant::measure's `variant_h`): h = log (K_ε μᴺ)(x) − log π(x)
// (or log K_ε π for B, already in fixed.y), finished for KL or χ²; no divergence value.
fn variant_h(i: u32, f: vec4<f32>) -> vec2<f32> {
    return vec2<f32>(finish(log_sum_at(i) - f.y), 0.0);
}
