// Variants D and D′ (CPU twin: variant::smoothed's `variant_h`): h = Σ_q ω_q f(y_iq) + the second
// sum in logs2, with f the log ratio log (K_ε μᴺ)(y) − log π(y) (or log K_ε π for D′) at the
// point's quadrature nodes (KL), or the ratio (χ²); the first term is also the integrand of the
// divergence's value.
fn variant_h(i: u32, f: vec4<f32>) -> vec2<f32> {
    var first = 0.0;
    for (var q = 0u; q < div.q; q++) {
        let r = node_logs[i * div.q + q] - node_ref[i * div.q + q];
        if KL {
            first += quad[q].x * r;
        } else {
            first += quad[q].x * exp(r);
        }
    }
    return vec2<f32>(first + exp(logs2[i]), first);
}
