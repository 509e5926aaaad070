//! The WGSL sources, the generated header of compile-time constants, and pipeline creation.
//!
//! Each shader file under `shaders/` has one compute entry point. At pipeline-creation time its
//! text is concatenated after a generated header (the dimension, the packing, the workgroup size,
//! the domain, the variant) and the shared prelude, so loops over coordinates have constant
//! bounds and unroll. Plain `const`s are used rather than `override`s because workgroup array
//! sizes depend on them.

use super::context::GpuContext;
use super::host::{Counts, DivParams, FinalParams, KernelParams, MergeParams, StepParams};
use crate::error::{Error, Result};

/// The shared prelude (constants, packed layouts, helpers).
pub(crate) const PRELUDE: &str = include_str!("../../../shaders/prelude.wgsl");

/// How a binding is declared in the shader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bind {
    /// `var<uniform>`.
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    Write,
}

/// One shader: its file's text, workgroup size, bindings (in binding order from 0) and the sizes
/// of the host structs its uniforms mirror (in binding order), all checked against the WGSL
/// when its pipeline is made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shader {
    pub name: &'static str,
    pub source: &'static str,
    pub workgroup: u32,
    pub binds: &'static [Bind],
    pub uniforms: &'static [usize],
}

use Bind::{Read as R, Uniform as U, Write as W};

/// Workgroup size (and source tile) of the kernel sum.
pub(crate) const KERNEL_WG: u32 = 128;
/// Workgroup size of the element-wise passes.
pub(crate) const ELEMENT_WG: u32 = 256;
/// Workgroup size of the `summarise` reduction (its per-invocation partial is ~100 bytes).
pub(crate) const REDUCE_WG: u32 = 128;
/// Most workgroups in the first level of a reduction (the second level is one workgroup).
pub(crate) const REDUCE_GROUPS: u32 = 256;

pub(crate) const LOG_KERNEL_SUM: Shader = Shader {
    name: "log_kernel_sum",
    source: concat!(
        include_str!("../../../shaders/kernel_params.wgsl"),
        include_str!("../../../shaders/kernel_pair.wgsl"),
        include_str!("../../../shaders/log_kernel_sum.wgsl")
    ),
    workgroup: KERNEL_WG,
    binds: &[U, R, R, W, R],
    uniforms: &[size_of::<KernelParams>()],
};
pub(crate) const LOG_KERNEL_SUM_CELLS: Shader = Shader {
    name: "log_kernel_sum_cells",
    source: concat!(
        include_str!("../../../shaders/kernel_params.wgsl"),
        include_str!("../../../shaders/kernel_pair.wgsl"),
        include_str!("../../../shaders/log_kernel_sum_cells.wgsl")
    ),
    workgroup: KERNEL_WG,
    binds: &[U, R, R, W, R, R, R, R, W],
    uniforms: &[size_of::<KernelParams>()],
};
pub(crate) const CELL_MASS: Shader = Shader {
    name: "cell_mass",
    source: concat!(
        include_str!("../../../shaders/kernel_params.wgsl"),
        include_str!("../../../shaders/cell_mass.wgsl")
    ),
    workgroup: ELEMENT_WG,
    binds: &[U, R, R, W, R],
    uniforms: &[size_of::<KernelParams>()],
};
pub(crate) const CELL_BOUND: Shader = Shader {
    name: "cell_bound",
    source: concat!(
        include_str!("../../../shaders/kernel_params.wgsl"),
        include_str!("../../../shaders/cell_bound.wgsl")
    ),
    workgroup: ELEMENT_WG,
    binds: &[U, R, R, W, W],
    uniforms: &[size_of::<KernelParams>()],
};
pub(crate) const MINIMAL_KERNEL_SUM: Shader = Shader {
    name: "minimal_kernel_sum",
    source: include_str!("../../../shaders/minimal_kernel_sum.wgsl"),
    workgroup: KERNEL_WG,
    binds: &[U, R, W],
    uniforms: &[size_of::<[u32; 4]>()],
};
/// Bindings 0–9 of the shaders that call `divergence_derivative` (summarise, rates_at).
macro_rules! with_divergence_derivative {
    ($file:literal) => {
        concat!(include_str!("../../../shaders/divergence_derivative.wgsl"), include_str!($file))
    };
}
pub(crate) const SUMMARISE: Shader = Shader {
    name: "summarise",
    source: with_divergence_derivative!("../../../shaders/summarise.wgsl"),
    workgroup: REDUCE_WG,
    binds: &[U, R, R, R, R, R, R, R, R, R, U, W, R, W, R],
    uniforms: &[size_of::<DivParams>(), size_of::<Counts>()],
};
pub(crate) const SUMMARISE_FINAL: Shader = Shader {
    name: "summarise_final",
    source: concat!(
        include_str!("../../../shaders/step_control.wgsl"),
        include_str!("../../../shaders/summarise_final.wgsl")
    ),
    workgroup: REDUCE_WG,
    binds: &[U, R, U, R, W, W],
    uniforms: &[size_of::<StepParams>(), size_of::<FinalParams>()],
};
pub(crate) const RATES_AT: Shader = Shader {
    name: "rates_at",
    source: with_divergence_derivative!("../../../shaders/rates_at.wgsl"),
    workgroup: ELEMENT_WG,
    binds: &[U, R, R, R, R, R, R, R, R, R, R, W],
    uniforms: &[size_of::<DivParams>()],
};
pub(crate) const RATES: Shader = Shader {
    name: "rates",
    source: include_str!("../../../shaders/rates.wgsl"),
    workgroup: ELEMENT_WG,
    binds: &[U, R, R, W],
    uniforms: &[size_of::<Counts>()],
};
pub(crate) const EULER_UPDATE: Shader = Shader {
    name: "euler_update",
    source: include_str!("../../../shaders/euler_update.wgsl"),
    workgroup: ELEMENT_WG,
    binds: &[U, R, R, W, W, W],
    uniforms: &[size_of::<Counts>()],
};
pub(crate) const EXPONENTIAL_UPDATE: Shader = Shader {
    name: "exponential_update",
    source: include_str!("../../../shaders/exponential_update.wgsl"),
    workgroup: ELEMENT_WG,
    binds: &[U, R, R, W, W, W],
    uniforms: &[size_of::<Counts>()],
};
pub(crate) const NORMALISE: Shader = Shader {
    name: "normalise",
    source: include_str!("../../../shaders/normalise.wgsl"),
    workgroup: ELEMENT_WG,
    binds: &[U, R, W, W, W],
    uniforms: &[size_of::<Counts>()],
};

pub(crate) const LOG_SUM_MERGE: Shader = Shader {
    name: "log_sum_merge",
    source: include_str!("../../../shaders/log_sum_merge.wgsl"),
    workgroup: ELEMENT_WG,
    binds: &[U, R, W, R],
    uniforms: &[size_of::<MergeParams>()],
};
pub(crate) const PACK_COEFFICIENTS: Shader = Shader {
    name: "pack_coefficients",
    source: include_str!("../../../shaders/pack_coefficients.wgsl"),
    workgroup: ELEMENT_WG,
    binds: &[U, R, W, R],
    uniforms: &[size_of::<Counts>()],
};

/// Every shader, for the checks that cover them all: the engine's, the energy terms' and the
/// variants'.
pub(crate) fn all() -> Vec<&'static Shader> {
    let engine: [&'static Shader; 14] = [
        &LOG_KERNEL_SUM,
        &LOG_KERNEL_SUM_CELLS,
        &CELL_MASS,
        &CELL_BOUND,
        &MINIMAL_KERNEL_SUM,
        &SUMMARISE,
        &SUMMARISE_FINAL,
        &RATES,
        &RATES_AT,
        &EULER_UPDATE,
        &EXPONENTIAL_UPDATE,
        &NORMALISE,
        &LOG_SUM_MERGE,
        &PACK_COEFFICIENTS,
    ];
    let energies = crate::energy::SHADERS.into_iter().flatten().copied();
    engine.into_iter().chain(energies).chain(crate::variant::shaders()).collect()
}

/// The most storage buffers any shader binds: a device limit the engine needs.
pub(crate) fn max_storage_bindings() -> u32 {
    all().iter().map(|s| s.binds.iter().filter(|b| **b != Bind::Uniform).count()).max().unwrap_or(0) as u32
}

/// The bindings a shader's WGSL declares, in binding order, as naga reads them: how each is
/// declared and its smallest valid size in bytes (the uniform struct's size, or one element of a
/// storage array). Compared with the host's [`Shader::binds`] at pipeline creation, and used as
/// every binding's `min_binding_size`.
pub(crate) fn reflect(source: &str) -> std::result::Result<Vec<(Bind, u64)>, String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).map_err(|e| e.to_string())?;
    let mut binds: Vec<(u32, Bind, u64)> = Vec::new();
    for (_, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else { continue };
        let bind = match var.space {
            naga::AddressSpace::Uniform => Bind::Uniform,
            naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => Bind::Write,
            naga::AddressSpace::Storage { .. } => Bind::Read,
            other => return Err(format!("binding {} is in the {other:?} address space", binding.binding)),
        };
        let size = match module.types[var.ty].inner {
            naga::TypeInner::Array { size: naga::ArraySize::Dynamic, stride, .. } => u64::from(stride),
            _ => u64::from(layouter[var.ty].size),
        };
        binds.push((binding.binding, bind, size));
    }
    binds.sort_by_key(|b| b.0);
    if binds.iter().enumerate().any(|(i, b)| b.0 as usize != i) {
        return Err(format!("bindings are not 0, 1, 2, …: {:?}", binds.iter().map(|b| b.0).collect::<Vec<_>>()));
    }
    Ok(binds.into_iter().map(|(_, b, s)| (b, s)).collect())
}

/// The compile-time constants of one engine's shaders.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Header {
    /// Dimension d.
    pub dim: u32,
    /// vec4s per packed point.
    pub packed: u32,
    /// Whether the domain is a torus (minimum image).
    pub torus: bool,
    /// Periodic images summed on each side (0: minimum image only).
    pub images: u32,
    /// Whether the farther image on each side is summed too (see `Layout::far_images`).
    pub far_images: bool,
    /// Degree of `exp2_fma`'s polynomial for the images (see `Layout::exp2_degree`).
    pub exp2_degree: u32,
    /// The images' exponentials by `exp2` on the special-function unit instead of `exp2_fma`
    /// (`GpuOptions::image_exponentials`, and `frflow bench`'s `torus-images-sfu` row).
    pub images_sfu: bool,
    /// The variant's index (A, B, C, D, D′, exact).
    pub variant: u32,
    /// KL (else χ²).
    pub kl: bool,
    /// Fixed-point coordinates (else f32).
    pub fixed: bool,
    /// WGSL a user supplied (a pair kernel's `pair_kernel` and its `SIDE`), placed after the
    /// constants. Shaders that hold it are always built with bounds checks.
    pub user: Option<std::sync::Arc<str>>,
}

impl Header {
    /// The constants of a d-dimensional problem before any kernel specialises them: f32
    /// coordinates, no images, variant A, KL.
    pub fn plain(dim: usize, torus: bool) -> Header {
        Header {
            dim: dim as u32,
            packed: packed_len(dim) as u32,
            torus,
            images: 0,
            far_images: false,
            exp2_degree: 7,
            images_sfu: false,
            variant: 0,
            kl: true,
            fixed: false,
            user: None,
        }
    }

    /// These constants specialised to `kernel` with points packed in `layout`: its periodic
    /// images (and the polynomial they need) and fixed point.
    pub fn for_kernel(&self, kernel: &crate::model::Gaussian, layout: &super::host::Layout) -> Header {
        let dim = self.dim as usize;
        let far_images = kernel.images > 0 && layout.far_images(dim);
        Header {
            images: kernel.images,
            far_images,
            exp2_degree: layout.exp2_degree(dim, kernel.images),
            fixed: layout.fixed,
            ..self.clone()
        }
    }

    /// The kernel-sum path these constants select, as `frflow bench` and the op-count test name
    /// it (see log_kernel_sum.wgsl).
    pub fn path(&self) -> &'static str {
        match (self.torus, self.images > 0, self.far_images, self.fixed) {
            (true, true, _, _) if self.images_sfu => "torus-images-sfu",
            (true, true, true, _) => "torus-images-far",
            (true, true, false, _) => "torus-images",
            (true, false, _, true) => "torus-fixed",
            (true, false, _, false) => "torus-f32",
            (false, _, _, true) => "euclidean-fixed",
            (false, _, _, false) => "euclidean-f32",
        }
    }

    /// The WGSL text declaring the constants for a shader with workgroup size `wg`.
    pub fn text(&self, wg: u32) -> String {
        let constants = format!(
            "const D: u32 = {}u;\nconst P: u32 = {}u;\nconst WG: u32 = {wg}u;\nconst TORUS: bool = {};\n\
             const IMAGES: u32 = {}u;\nconst FAR_IMAGES: bool = {};\nconst EXP2_DEGREE: u32 = {}u;\nconst IMAGES_SFU: bool = {};\n\
             const VARIANT: u32 = {}u;\nconst KL: bool = {};\nconst FIXED: bool = {};\nconst PL: u32 = {}u;\n",
            self.dim,
            self.packed,
            self.torus,
            self.images,
            self.far_images,
            self.exp2_degree,
            self.images_sfu,
            self.variant,
            self.kl,
            self.fixed,
            if self.fixed && !self.torus { self.packed } else { 1 }
        );
        match &self.user {
            Some(user) => format!("{constants}\n{user}\n"),
            None => constants,
        }
    }
}

/// vec4s per packed point: d coordinates plus the coefficient.
pub(crate) fn packed_len(dim: usize) -> usize {
    (dim + 1).div_ceil(4)
}

/// Where `divergence_derivative.wgsl` takes the variant's `variant_h` (see [`crate::variant`]).
const VARIANT_H: &str = "//#variant_h";

/// The full source of `shader` under `header`, with the header's variant's `variant_h` where the
/// shader asks for it.
pub(crate) fn source(shader: &Shader, header: &Header) -> String {
    let body = if shader.source.contains(VARIANT_H) {
        let variant = crate::variant::Variant::ALL[header.variant as usize];
        shader.source.replacen(VARIANT_H, variant.kernelization().wgsl(), 1)
    } else {
        shader.source.to_string()
    };
    format!("{}\n{}\n{}", header.text(shader.workgroup), PRELUDE, body)
}

/// Compiles (or fetches from the context's cache) the pipeline of `shader` under `header`.
///
/// By default the module is created with `create_shader_module_trusted(…, unchecked())`: no
/// bounds checks are injected. That is sound because every index in these shaders is in bounds by
/// construction (see the prelude's comment); `checked` builds the ordinary checked module, which
/// a test compares against.
pub(crate) fn pipeline(
    ctx: &GpuContext,
    shader: &Shader,
    header: &Header,
    checked: bool,
) -> Result<wgpu::ComputePipeline> {
    // A user's WGSL gets wgpu's bounds checks: nothing bounds its indices by construction.
    let checked = checked || header.user.is_some();
    let key = (shader.name, header.text(shader.workgroup), checked);
    if let Some((p, _)) = ctx.pipelines.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(p.clone());
    }
    let text = source(shader, header);
    // The host's binding list against the WGSL's declarations (an ABI check), and each binding's
    // smallest valid size, so that a too-small buffer fails when the bind group is made.
    let declared = reflect(&text).map_err(|e| Error::gpu(format!("reading shader `{}`: {e}", shader.name)))?;
    if declared.iter().map(|d| d.0).ne(shader.binds.iter().copied()) {
        return Err(Error::gpu(format!(
            "shader `{}` declares bindings {:?} but the host binds {:?}",
            shader.name,
            declared.iter().map(|d| d.0).collect::<Vec<_>>(),
            shader.binds
        )));
    }
    let uniforms: Vec<usize> = declared.iter().filter(|d| d.0 == Bind::Uniform).map(|d| d.1 as usize).collect();
    if uniforms != shader.uniforms {
        return Err(Error::gpu(format!(
            "shader `{}` declares uniforms of {uniforms:?} bytes but the host's structs have {:?}",
            shader.name, shader.uniforms
        )));
    }
    let device = &ctx.device;
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(shader.name),
        source: wgpu::ShaderSource::Wgsl(text.as_str().into()),
    };
    let module = if checked {
        device.create_shader_module(desc)
    } else {
        // SAFETY: every buffer and workgroup-array index in frflow's shaders is bounded by
        // construction (thread indices are compared with element counts that equal the bound
        // buffers' lengths; loops over tiles and coordinates have constant bounds), there are no
        // integer divisions by a possibly-zero value (Q ≥ 1), and every loop terminates.
        unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
    };
    let entries: Vec<wgpu::BindGroupLayoutEntry> = declared
        .iter()
        .enumerate()
        .map(|(i, (b, size))| wgpu::BindGroupLayoutEntry {
            binding: i as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match b {
                Bind::Uniform => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: std::num::NonZeroU64::new(*size),
                },
                Bind::Read | Bind::Write => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: *b == Bind::Read },
                    has_dynamic_offset: false,
                    min_binding_size: std::num::NonZeroU64::new(*size),
                },
            },
            count: None,
        })
        .collect();
    let bgl = device
        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(shader.name), entries: &entries });
    let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(shader.name),
        bind_group_layouts: &[Some(&bgl)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(shader.name),
        layout: Some(&layout),
        module: &module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &[],
            // Every workgroup variable is written before it is read.
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(Error::gpu_from(format_args!("compiling shader `{}`", shader.name), e));
    }
    ctx.pipelines.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (pipeline.clone(), text));
    Ok(pipeline)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GPU ABI, checked against the WGSL rather than mirrored by hand: for every shader,
    /// under headers of every kind (d = 1, 3, 8; torus or not; fixed point; images; each
    /// variant), naga's reading of the bindings equals the host's list in order and kind, binding 0
    /// is a uniform, and every uniform's size is its host struct's.
    #[test]
    fn host_bindings_and_uniforms_match_the_wgsl() {
        for dim in [1u32, 3, 8] {
            // Every variant (its `variant_h` is spliced into summarise and rates_at).
            let kinds = [(false, false, 0, 0), (true, true, 0, 1), (false, true, 0, 2), (true, true, 0, 3)];
            for (torus, fixed, images, variant) in kinds.into_iter().chain([(false, false, 1, 4), (true, false, 2, 5)])
            {
                let packed = packed_len(dim as usize) as u32;
                let far_images = images > 1;
                // A user's pair kernel, which the pair shaders call (the others ignore it).
                let user = Some("const SIDE: f32 = 0.0;\nfn pair_kernel(x: array<f32, D>, y: array<f32, D>) -> f32 { return x[0] * y[0]; }".into());
                let header = Header {
                    dim,
                    packed,
                    torus,
                    images,
                    far_images,
                    exp2_degree: 5,
                    images_sfu: images == 2,
                    variant,
                    kl: true,
                    fixed,
                    user,
                };
                for shader in all() {
                    let declared = reflect(&source(shader, &header)).unwrap_or_else(|e| panic!("{}: {e}", shader.name));
                    let kinds: Vec<Bind> = declared.iter().map(|d| d.0).collect();
                    assert_eq!(kinds, shader.binds, "{} (d = {dim})", shader.name);
                    assert_eq!(kinds[0], Bind::Uniform, "{}", shader.name);
                    let uniforms: Vec<usize> =
                        declared.iter().filter(|d| d.0 == Bind::Uniform).map(|d| d.1 as usize).collect();
                    assert_eq!(uniforms, shader.uniforms, "{}: uniform sizes", shader.name);
                    assert!(declared.iter().all(|d| d.1 > 0), "{}: a zero-size binding", shader.name);
                }
            }
        }
        assert_eq!(max_storage_bindings(), 13);
    }
}
