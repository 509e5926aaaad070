// The known-density oracle (CPU twin: variant::exact's `variant_h`): h = finish(log N + log w_i +
// log μ₀(X_i) − log π(X_i)); the divergence's integrand is h (KL) or h/2 (χ²).
fn variant_h(i: u32, f: vec4<f32>) -> vec2<f32> {
    let h = finish(div.ln_n + lw[i] + f.z - f.y);
    if KL {
        return vec2<f32>(h, h);
    }
    return vec2<f32>(h, 0.5 * h);
}
