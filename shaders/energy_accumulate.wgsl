// Adds one energy term's δF/δm and its share of F to the per-target running total (CPU twin:
// energy::energy_accumulate). The first term starts from the fixed
// potential part U (fixed.x); the total then feeds `divergence_derivative` (g = δF + σ h) and
// `summarise` (F = Σ_i w_i f_i + the data terms + constants).
//
// From the term's kernel sums l1 (and l2):
//   interaction  δF += W * m = strength e^l1               f += ½ strength e^l1
//   mmd          δF += k * m − k * ν = e^l1 − e^l2          f += ½ e^l1 − e^l2   (+ ½ k*ν*ν on the host)
//   linear       δF += l1                                 f += l2
//                (network: l1 the residuals' pull + λ/2 |x|², l2 = λ/2 |x|², + Σ_k r_k²/2M as data;
//                pair kernel: l1 = Σ_j w_j W(x, X_j), l2 = ½ l1; the user's whole term: l1 its δF/δm
//                from the host, l2 = 0, F on the host)
//   npmle        δF −= e^l1 = (1/M) Σ_k φ(z_k − x)/p(z_k)   f += 0               (− Σ_k log p_k / M as data)

struct Params {
    n: u32,
    kind: u32,
    first: u32,
    _pad0: u32,
    strength: f32,
    _pad1: f32,
    _pad2: f32,
    _pad3: f32,
}

const INTERACTION: u32 = 0u;
const MMD: u32 = 1u;
const LINEAR: u32 = 2u;
const NPMLE: u32 = 3u;

@group(0) @binding(0) var<uniform> params: Params;
// Per target: (U, log π or log K_ε π, log μ₀, 0).
@group(0) @binding(1) var<storage, read> fixed: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> l1: array<f32>;
@group(0) @binding(3) var<storage, read> l2: array<f32>;
// Per target: (δF, f).
@group(0) @binding(4) var<storage, read_write> energy: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read> control: array<u32>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if i >= params.n || control[C_HALTED] != RUNNING {
        return;
    }
    var e = vec2<f32>(fixed[i].x);
    if params.first == 0u {
        e = energy[i];
    }
    switch params.kind {
        case INTERACTION: {
            let s = params.strength * exp(l1[i]);
            e += vec2<f32>(s, 0.5 * s);
        }
        case MMD: {
            let s = exp(l1[i]);
            let nu = exp(l2[i]);
            e += vec2<f32>(s - nu, 0.5 * s - nu);
        }
        case LINEAR: {
            e += vec2<f32>(l1[i], l2[i]);
        }
        default: {
            e.x -= exp(l1[i]);
        }
    }
    energy[i] = e;
}
