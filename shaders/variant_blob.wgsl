// Variant C (CPU twin: variant::blob's `variant_h`): h = f + Σ_j w_j K(X_j, x) / d_j with f the
// log ratio log (K_ε μᴺ)(x) − log π(x) (KL) or the ratio (χ²), the second sum from
// `blob_coefficients` in logs2; f is also the integrand of the divergence's value.
fn variant_h(i: u32, f: vec4<f32>) -> vec2<f32> {
    let ratio = logs[i] - f.y;
    var e = ratio;
    if !KL {
        e = exp(ratio);
    }
    return vec2<f32>(e + exp(logs2[i]), e);
}
