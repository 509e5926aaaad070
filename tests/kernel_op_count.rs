//! Slow-unit operations per pair in the kernel-sum shader, counted in naga's IR of the WGSL that
//! the engines actually compile.
//!
//! On a GPU the floor of a Gaussian kernel sum is one special-function op (exp2) per pair; round,
//! floor, int↔float conversions, divisions and further exponentials issue on the same slow unit
//! (DESIGN.md, "Cost per pair"). This test builds engines for every kernel path (R^d and torus,
//! f32 and fixed point, periodic images with and without the farther image; d = 1, 3, 8), every
//! variant, every energy with a kernel sum, `rates_at`, the Sinkhorn pass and the cutoff's cell
//! sum (d = 1, 3), collects every `log_kernel_sum` and `log_kernel_sum_cells` source they compiled
//! (`GpuContext::shader_sources`), and counts, per pair,
//! the slow lane-operations in the loop over the source tile (in `sum_tile`): its body is one
//! call of `accumulate`, which takes four sources. It fails if any path needs more than one.
//!
//! Excluded, as amortised: staging a tile and checking its sums (once per WG pairs), `redo_tile`,
//! the checked pass over a tile that runs only while the log-domain shift must rise, and
//! `rescale`, the raise itself, at most (largest exponent − first shift) / 32 times per target
//! however many pairs there are; its own count is checked to be one exp2.

mod common;

use common::context;
use frflow::energy::{Interaction, Mmd, Npmle};
use frflow::engine::Engine;
use frflow::engine::cells::{CellGrid, Cutoff};
use frflow::engine::gpu::{GpuEngine, KernelPath, SinkhornLogSum};
use frflow::model::{
    Divergence, Domain, Energy, Gaussian, ModelSpec, Points, QuadratureSpec, Reference, Space, Variant,
};
use frflow::particles::{Initial, Particles};
use frflow::transport::Cost;
use naga::{Block, Expression, Handle, MathFunction, Module, ScalarKind, Statement, TypeInner};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Operations counted per pair: on the special-function unit, and everything else (FMA pipe,
/// integer, select), both in scalar lanes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Ops {
    slow: f64,
    other: f64,
}

impl std::ops::Add for Ops {
    type Output = Ops;
    fn add(self, o: Ops) -> Ops {
        Ops { slow: self.slow + o.slow, other: self.other + o.other }
    }
}

impl std::ops::Mul<f64> for Ops {
    type Output = Ops;
    fn mul(self, k: f64) -> Ops {
        Ops { slow: self.slow * k, other: self.other * k }
    }
}

fn max(a: Ops, b: Ops) -> Ops {
    if (b.slow, b.other) > (a.slow, a.other) { b } else { a }
}

/// Math functions that do not issue on the FMA/integer pipes (transcendentals, rounding,
/// square roots and everything built on them).
fn slow_math(f: MathFunction) -> bool {
    use MathFunction::*;
    matches!(
        f,
        Cos | Cosh
            | Sin
            | Sinh
            | Tan
            | Tanh
            | Acos
            | Asin
            | Atan
            | Atan2
            | Asinh
            | Acosh
            | Atanh
            | Ceil
            | Floor
            | Round
            | Fract
            | Trunc
            | Modf
            | Frexp
            | Ldexp
            | Exp
            | Exp2
            | Log
            | Log2
            | Pow
            | Distance
            | Length
            | Normalize
            | Refract
            | Sqrt
            | InverseSqrt
            | Inverse
            | SmoothStep
    )
}

struct Counter<'a> {
    module: &'a Module,
    info: &'a naga::valid::ModuleInfo,
    /// Functions whose calls count zero (amortised), by name.
    excluded: &'a [&'a str],
    memo: HashMap<Handle<naga::Function>, Ops>,
}

impl Counter<'_> {
    fn lanes(&self, ty: &TypeInner) -> f64 {
        match ty {
            TypeInner::Vector { size, .. } => *size as u8 as f64,
            _ => 1.0,
        }
    }

    fn kind(&self, ty: &TypeInner) -> Option<ScalarKind> {
        match ty {
            TypeInner::Scalar(s) | TypeInner::Vector { scalar: s, .. } => Some(s.kind),
            _ => None,
        }
    }

    /// One expression of `fun` (whose analysis is `fi`).
    fn expression(&self, fun: &naga::Function, fi: &naga::valid::FunctionInfo, h: Handle<Expression>) -> Ops {
        let ty = |e: Handle<Expression>| fi[e].ty.inner_with(&self.module.types);
        let lanes = self.lanes(ty(h));
        match fun.expressions[h] {
            Expression::Math { fun: f, .. } if slow_math(f) => Ops { slow: lanes, other: 0.0 },
            // A negation is an operand modifier of the instruction that uses it on GPUs.
            Expression::Unary { op: naga::UnaryOperator::Negate, .. } => Ops::default(),
            Expression::Math { .. }
            | Expression::Unary { .. }
            | Expression::Select { .. }
            | Expression::Relational { .. } => Ops { slow: 0.0, other: lanes },
            Expression::Binary { op, left, .. } => {
                use naga::BinaryOperator::*;
                let float_or_int =
                    matches!(self.kind(ty(left)), Some(ScalarKind::Float | ScalarKind::Sint | ScalarKind::Uint));
                if matches!(op, Divide | Modulo) && float_or_int {
                    Ops { slow: lanes, other: 0.0 }
                } else {
                    Ops { slow: 0.0, other: lanes }
                }
            }
            Expression::As { expr, kind, convert: Some(_) } => {
                let from = self.kind(ty(expr));
                let float = |k: Option<ScalarKind>| k == Some(ScalarKind::Float);
                let int = |k: Option<ScalarKind>| matches!(k, Some(ScalarKind::Sint | ScalarKind::Uint));
                if (float(from) && int(Some(kind))) || (int(from) && float(Some(kind))) {
                    Ops { slow: lanes, other: 0.0 }
                } else {
                    Ops { slow: 0.0, other: lanes }
                }
            }
            _ => Ops::default(),
        }
    }

    /// The constant value of `e` (a literal or a named constant), if it has one.
    fn constant(&self, fun: &naga::Function, e: Handle<Expression>) -> Option<u64> {
        let lit = |l: &naga::Literal| match *l {
            naga::Literal::U32(v) => Some(u64::from(v)),
            naga::Literal::I32(v) => u64::try_from(v).ok(),
            naga::Literal::AbstractInt(v) => u64::try_from(v).ok(),
            _ => None,
        };
        match &fun.expressions[e] {
            Expression::Literal(l) => lit(l),
            Expression::Constant(c) => match &self.module.global_expressions[self.module.constants[*c].init] {
                Expression::Literal(l) => lit(l),
                _ => None,
            },
            _ => None,
        }
    }

    /// The value of a condition made of the header's constants (`FIXED`, `IMAGES > 0u`), if it
    /// is one: such branches are resolved at compile time, so only the live one counts.
    fn constant_bool(&self, fun: &naga::Function, e: Handle<Expression>) -> Option<bool> {
        use naga::BinaryOperator::*;
        match &fun.expressions[e] {
            Expression::Literal(naga::Literal::Bool(b)) => Some(*b),
            Expression::Constant(c) => match &self.module.global_expressions[self.module.constants[*c].init] {
                Expression::Literal(naga::Literal::Bool(b)) => Some(*b),
                _ => None,
            },
            Expression::Unary { op: naga::UnaryOperator::LogicalNot, expr } => {
                self.constant_bool(fun, *expr).map(|b| !b)
            }
            Expression::Binary { op, left, right } => {
                let (a, b) = (self.constant(fun, *left)?, self.constant(fun, *right)?);
                match op {
                    Less => Some(a < b),
                    LessEqual => Some(a <= b),
                    Greater => Some(a > b),
                    GreaterEqual => Some(a >= b),
                    Equal => Some(a == b),
                    NotEqual => Some(a != b),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Iterations of a loop `for (var i = 0; i < BOUND; i += STEP)` with constant BOUND and STEP
    /// (naga lowers it to a body starting with `if i < BOUND {} else { break; }` and a continuing
    /// block storing i + STEP); `None` for any other loop.
    fn trip_count(&self, fun: &naga::Function, body: &Block, continuing: &Block) -> Option<f64> {
        let bound = body.iter().find_map(|s| match s {
            Statement::If { condition, accept, reject }
                if accept.is_empty() && matches!(reject.iter().next(), Some(Statement::Break)) =>
            {
                match fun.expressions[*condition] {
                    Expression::Binary { op: naga::BinaryOperator::Less, right, .. } => self.constant(fun, right),
                    _ => None,
                }
            }
            _ => None,
        })?;
        let step = continuing.iter().find_map(|s| match s {
            Statement::Store { value, .. } => match fun.expressions[*value] {
                Expression::Binary { op: naga::BinaryOperator::Add, right, .. } => self.constant(fun, right),
                _ => None,
            },
            _ => None,
        })?;
        (step > 0).then(|| bound.div_ceil(step) as f64)
    }

    /// Operations of one execution of `block` (the costlier branch of every branch).
    fn block(&mut self, fun: &naga::Function, fi: &naga::valid::FunctionInfo, block: &Block) -> Ops {
        let mut total = Ops::default();
        for s in block.iter() {
            total = total
                + match s {
                    Statement::Emit(range) => {
                        range.clone().map(|h| self.expression(fun, fi, h)).fold(Ops::default(), |a, b| a + b)
                    }
                    Statement::Block(b) => self.block(fun, fi, b),
                    Statement::If { condition, accept, reject } => match self.constant_bool(fun, *condition) {
                        Some(true) => self.block(fun, fi, accept),
                        Some(false) => self.block(fun, fi, reject),
                        None => {
                            let a = self.block(fun, fi, accept);
                            let r = self.block(fun, fi, reject);
                            max(a, r)
                        }
                    },
                    Statement::Switch { cases, .. } => {
                        cases.iter().map(|c| self.block(fun, fi, &c.body)).fold(Ops::default(), max)
                    }
                    Statement::Loop { body, continuing, .. } => {
                        let trips = self
                            .trip_count(fun, body, continuing)
                            .unwrap_or_else(|| panic!("a loop without a constant trip count inside the pair loop"));
                        (self.block(fun, fi, body) + self.block(fun, fi, continuing)) * trips
                    }
                    Statement::Call { function, .. } => self.function(*function),
                    _ => Ops::default(),
                };
        }
        total
    }

    /// Operations of one call of `f` (zero for excluded functions).
    fn function(&mut self, f: Handle<naga::Function>) -> Ops {
        let fun = &self.module.functions[f];
        if fun.name.as_deref().is_some_and(|n| self.excluded.contains(&n)) {
            return Ops::default();
        }
        if let Some(ops) = self.memo.get(&f) {
            return *ops;
        }
        let ops = self.block(fun, &self.info[f], &fun.body);
        self.memo.insert(f, ops);
        ops
    }
}

/// The function named `name`.
fn function(module: &Module, name: &str) -> Handle<naga::Function> {
    module.functions.iter().find(|(_, f)| f.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("no `{name}`")).0
}

/// (per pair, per call of `rescale` where there is one) for one kernel-sum source.
fn count(source: &str) -> (Ops, Option<Ops>) {
    let module = naga::front::wgsl::parse_str(source).expect("the shader parses");
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
        .validate(&module)
        .expect("the shader validates");
    let accumulate = function(&module, "accumulate");
    // The pair loop: the loop of `sum_tile` whose body calls `accumulate` (outside any inner
    // loop); one iteration takes `step` pairs.
    fn calls(block: &Block, target: Handle<naga::Function>) -> bool {
        block.iter().any(|s| match s {
            Statement::Call { function, .. } => *function == target,
            Statement::Block(b) => calls(b, target),
            Statement::If { accept, reject, .. } => calls(accept, target) || calls(reject, target),
            _ => false,
        })
    }
    fn find(block: &Block, target: Handle<naga::Function>) -> Option<(&Block, &Block)> {
        block.iter().find_map(|s| match s {
            Statement::Loop { body, continuing, .. } => {
                if calls(body, target) {
                    Some((body, continuing))
                } else {
                    find(body, target)
                }
            }
            Statement::Block(b) => find(b, target),
            Statement::If { accept, reject, .. } => find(accept, target).or_else(|| find(reject, target)),
            _ => None,
        })
    }
    let sum_tile = function(&module, "sum_tile");
    let tile_fn = &module.functions[sum_tile];
    let (body, continuing) = find(&tile_fn.body, accumulate).expect("`sum_tile` has a pair loop calling `accumulate`");
    let mut counter = Counter { module: &module, info: &info, excluded: &["rescale"], memo: HashMap::new() };
    let fi = &info[sum_tile];
    let iteration = counter.block(tile_fn, fi, body) + counter.block(tile_fn, fi, continuing);
    // The step of the pair loop (`j += 4u`) is the pairs per iteration.
    let step = continuing
        .iter()
        .find_map(|s| match s {
            Statement::Store { value, .. } => match tile_fn.expressions[*value] {
                Expression::Binary { op: naga::BinaryOperator::Add, right, .. } => counter.constant(tile_fn, right),
                _ => None,
            },
            _ => None,
        })
        .expect("the pair loop steps by a constant") as f64;
    let mut rescale_counter = Counter { module: &module, info: &info, excluded: &[], memo: HashMap::new() };
    let rescale = module
        .functions
        .iter()
        .find(|(_, f)| f.name.as_deref() == Some("rescale"))
        .map(|(h, _)| rescale_counter.function(h));
    (iteration * (1.0 / step), rescale)
}

/// The path a source was specialised for, from its generated constants.
fn path(source: &str) -> String {
    let constant = |name: &str| {
        let line = source.lines().find(|l| l.starts_with(&format!("const {name}:"))).expect("a header constant");
        line.split('=').nth(1).unwrap().trim().trim_end_matches(';').trim_end_matches('u').to_string()
    };
    let torus = constant("TORUS") == "true";
    let kind = match (torus, constant("IMAGES") != "0", constant("FIXED") == "true") {
        (true, true, _) if constant("IMAGES_SFU") == "true" => "torus-images-sfu",
        (true, true, _) if constant("FAR_IMAGES") == "true" => "torus-images-far",
        (true, true, _) => "torus-images",
        (true, false, true) => "torus-fixed",
        (true, false, false) => "torus-f32",
        (false, _, true) => "euclidean-fixed",
        (false, _, false) => "euclidean-f32",
    };
    format!("{kind} d={}", constant("D"))
}

fn particles(space: Space, n: usize, spread: f64) -> Particles {
    let init = match space.domain {
        Domain::Torus { .. } => Initial::Uniform { low: 0.0, high: 1.0 },
        Domain::Euclidean => Initial::Uniform { low: 0.0, high: spread },
    };
    Particles::sample(space, &init, n, 3).unwrap()
}

fn spec(space: Space, epsilon: f64, variant: Variant, energy: Vec<Energy>) -> ModelSpec {
    let reference = match space.domain {
        Domain::Torus { .. } => Reference::Uniform,
        Domain::Euclidean => Reference::Gaussian { mean: vec![0.0; space.dim], std: 2.0 },
    };
    ModelSpec {
        space,
        reference,
        divergence: Divergence::Kl,
        sigma: 1.0,
        epsilon,
        variant,
        energy,
        quadrature: QuadratureSpec { order: 2, samples: 8, ..Default::default() },
    }
}

#[test]
fn every_kernel_sum_path_needs_one_slow_op_per_pair() {
    let Some(ctx) = context() else { return };
    let n = 40;
    // (domain, ε, spread of the R^d points): f32 and fixed point on both domains, and the torus
    // with images, with (ε = 0.3) and without (ε = 0.1) the farther image.
    let geometries = [
        (Domain::Euclidean, 0.5, 3.0),
        (Domain::Euclidean, 0.01, 3.0),
        (Domain::Torus { side: 1.0 }, 0.06, 0.0),
        (Domain::Torus { side: 1.0 }, 0.005, 0.0),
        (Domain::Torus { side: 1.0 }, 0.1, 0.0),
        (Domain::Torus { side: 1.0 }, 0.3, 0.0),
    ];
    for d in [1, 3, 8] {
        for (domain, eps, spread) in geometries {
            let space = Space::new(d, domain).unwrap();
            let model = spec(space, eps, Variant::Measure, vec![]).build().unwrap();
            let mut engine = GpuEngine::new(ctx.clone(), model, particles(space, n, spread)).unwrap();
            // rates_at: the reference system's kernel sums at other points.
            let at = particles(space, 7, spread);
            engine.rates_at(&at.positions).unwrap();
            // The cell sum on the same path: δ = 0.9 keeps the radius small enough for a grid
            // even at the widest ε (accuracy is not the point here).
            if d <= 4 {
                let kernel = Gaussian::new(&space, eps, true, "epsilon").unwrap();
                let x = particles(space, n, spread).positions;
                let grid = CellGrid::new(&space, &x, Cutoff::radius(&kernel, 0.9)).expect("a grid");
                frflow::engine::gpu::log_kernel_sum_cells(&ctx, &space, &kernel, &grid, 0.9, &x, &x, &vec![0.0; n])
                    .unwrap();
            }
        }
        // The Sinkhorn pass of W₂ (always fixed point).
        let x = particles(Space::new(d, Domain::Euclidean).unwrap(), 33, 1.0).positions;
        let mut pass = SinkhornLogSum::new(&ctx, &Cost::euclidean(d).unwrap()).unwrap();
        frflow::transport::LogSum::log_sum(&mut pass, &x, &x, &vec![0.0; 33], 10.0).unwrap();
    }
    // Every variant and every energy with a kernel sum, in the paper's setting (torus, images).
    let space = Space::new(3, Domain::Torus { side: 1.0 }).unwrap();
    let sample = Arc::new(Points { dim: 3, values: particles(space, 9, 0.0).positions });
    let energies = [
        vec![Energy::Interaction(Interaction { strength: 0.5, width: 0.2 })],
        vec![Energy::Mmd(Mmd { width: 0.05, sample: sample.clone() })],
    ];
    for variant in Variant::ALL {
        let model = spec(space, 0.1, variant, vec![]).build().unwrap();
        GpuEngine::new(ctx.clone(), model, particles(space, n, 0.0)).unwrap();
    }
    for energy in energies {
        let model = spec(space, 0.1, Variant::Blob, energy).build().unwrap();
        GpuEngine::new(ctx.clone(), model, particles(space, n, 0.0)).unwrap();
    }
    let rd = Space::new(2, Domain::Euclidean).unwrap();
    let obs = Arc::new(Points { dim: 2, values: particles(rd, 50, 4.0).positions });
    let npmle = spec(rd, 0.2, Variant::SmoothedTarget, vec![Energy::Npmle(Npmle { observations: obs, noise: 0.3 })]);
    GpuEngine::new(ctx.clone(), npmle.build().unwrap(), particles(rd, n, 4.0)).unwrap();

    // The bench's row with the images on the special-function unit (an engine takes it only
    // with `image_exponentials = Sfu`, which is not the default).
    for d in [1, 3, 8] {
        frflow::engine::gpu::bench_log_kernel_sum(&ctx, KernelPath::TorusImagesSfu, d, 40, 1, false, None).unwrap();
    }
    // The yardstick: `frflow bench`'s minimal kernel, counted the same way.
    for d in [1, 2, 3, 8] {
        frflow::engine::gpu::minimal_kernel_sum(&ctx, &vec![0.5; 5 * d], &[0.2; 5], d).unwrap();
    }
    let mut minimal: BTreeMap<String, Ops> = BTreeMap::new();
    let mut seen: BTreeMap<String, (Ops, usize)> = BTreeMap::new();
    for (name, source) in ctx.shader_sources() {
        if name == "minimal_kernel_sum" {
            minimal.insert(path(&source).split(' ').nth(1).unwrap().to_string(), count(&source).0);
            continue;
        }
        if name != "log_kernel_sum" && name != "log_kernel_sum_cells" {
            continue;
        }
        let (per_pair, rescale) = count(&source);
        let p = format!("{name} {}", path(&source));
        let rescale = rescale.unwrap_or_else(|| panic!("{p}: no `rescale`"));
        assert_eq!(rescale.slow, 1.0, "{p}: `rescale` should be one exp2, is {rescale:?}");
        if p.contains("torus-images-sfu") {
            // The bench's comparison row (and the engines' non-default option): an exp2 per
            // image term and packed lane (the nearer image only at ε = 0.1), on purpose.
            let lanes = if p.ends_with("d=8") { 12.0 } else { 4.0 };
            assert_eq!(per_pair.slow, 1.0 + lanes, "{p}");
        } else {
            assert!(per_pair.slow <= 1.0, "{p}: {} slow-unit ops per pair (allowed: 1)", per_pair.slow);
            // The exp2 of the pair itself cannot be missing: a count of 0 means the counter lost it.
            assert_eq!(per_pair.slow, 1.0, "{p}: the pair's exp2 was not counted");
        }
        let entry = seen.entry(p).or_insert((per_pair, 0));
        entry.0 = max(entry.0, per_pair);
        entry.1 += 1;
    }
    // "other" is an upper bound: switches count their costliest case and index arithmetic counts
    // as if the driver's compiler did not unroll and fold it; the minimal kernel's count has the
    // same bias, so "vs minimal" compares like with like.
    eprintln!("shader and path                            slow/pair  other/pair  vs minimal  sources");
    for (d, ops) in &minimal {
        assert_eq!(ops.slow, 1.0, "minimal kernel {d}: {ops:?}");
        eprintln!(
            "{:<41} {:>9.2} {:>11.2} {:>11.2} {:>8}",
            format!("minimal_kernel_sum {d}"),
            ops.slow,
            ops.other,
            1.0,
            1
        );
    }
    for (p, (ops, k)) in &seen {
        let d = p.rsplit(' ').next().unwrap();
        let reference = minimal[d].other;
        eprintln!("{p:<41} {:>9.2} {:>11.2} {:>11.2} {k:>8}", ops.slow, ops.other, ops.other / reference);
    }
    for kind in ["euclidean-f32", "euclidean-fixed", "torus-f32", "torus-fixed", "torus-images", "torus-images-far"] {
        for (shader, dims) in [("log_kernel_sum", &[1, 3, 8][..]), ("log_kernel_sum_cells", &[1, 3][..])] {
            for d in dims {
                let p = format!("{shader} {kind} d={d}");
                assert!(seen.contains_key(&p), "no {p} kernel sum was compiled; seen: {:?}", seen.keys());
            }
        }
    }
}

/// The counter itself: a loop body with a round() per coordinate and a conversion per pair
/// counts them (so a regression to the old kernel would fail the test above).
#[test]
fn the_counter_sees_rounding_and_conversions() {
    let source = "
const WG: u32 = 8u;
var<private> acc: f32;
var<private> m: f32;
var<workgroup> tile: array<vec4<f32>, WG>;
fn rescale(e: f32) { acc *= exp2(m - e); m = e; }
fn pair(j: u32) -> f32 {
    var s = 0.0;
    for (var p = 0u; p < 3u; p++) {
        let d = tile[j] - round(tile[j]);
        s += dot(d.xyz, d.xyz) + f32(j);
    }
    return exp2(-s);
}
fn accumulate(j: u32) { acc += pair(j) + pair(j + 1u); }
fn sum_tile() {
    for (var j = 0u; j < WG; j += 2u) {
        accumulate(j);
    }
}
@compute @workgroup_size(8)
fn main(@builtin(local_invocation_index) lid: u32) {
    sum_tile();
}";
    let (per_pair, rescale) = count(source);
    // Per pair: 3 × (4 lanes of round + 1 conversion) + 1 exp2.
    assert_eq!(per_pair.slow, 16.0, "{per_pair:?}");
    assert_eq!(rescale.unwrap().slow, 1.0);
}
