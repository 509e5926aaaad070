//! Choosing a wgpu adapter and opening a device (or wrapping one the host application owns).
//!
//! Adapters are named the way cubecl names them: by kind (`discrete`, `integrated`, `virtual`,
//! `cpu`/`software`), by index in [`list_adapters`] order, or by a case-insensitive substring of
//! the adapter's name (`llvmpipe`, `H100`). `FRFLOW_DEVICE` supplies the selector when the caller
//! gives none; `WGPU_BACKEND` restricts the backends as usual in wgpu.

use super::kernels;
use crate::error::{Error, Result};
use crate::model::Model;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The environment variable that picks an adapter when no selector is given.
pub const DEVICE_ENV: &str = "FRFLOW_DEVICE";

/// What `frflow info` prints about one adapter: identity, and the limits that bound N.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AdapterReport {
    /// Position in [`list_adapters`] (usable as a selector).
    pub index: usize,
    /// The adapter's name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// Vulkan, Metal, Dx12 or Gl.
    pub backend: String,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Largest storage buffer binding in bytes (bounds N·Q·16 for the quadrature variants).
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer in bytes.
    pub max_buffer_size: u64,
    /// Workgroup (shared) memory in bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroups per dispatch dimension (a 2-D grid is used beyond it).
    pub max_compute_workgroups_per_dimension: u32,
}

impl AdapterReport {
    fn new(index: usize, info: &wgpu::AdapterInfo, limits: &wgpu::Limits) -> Self {
        AdapterReport {
            index,
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: device_type_name(info.device_type).to_string(),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        }
    }
}

fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}

/// Preference order when no selector is given: real GPUs first, then software.
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn instance() -> wgpu::Instance {
    // The primary backends (Vulkan, Metal, DX12) only: GL lacks the compute features used here
    // and would list the same software device twice. WGPU_BACKEND overrides as usual.
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::PRIMARY.with_env();
    wgpu::Instance::new(desc)
}

/// The adapters in a stable order: by kind (discrete first), then backend and name.
fn adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut list = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    list.sort_by_cached_key(|a| {
        let i = a.get_info();
        (rank(i.device_type), format!("{:?}", i.backend), i.name.clone(), i.device)
    });
    list
}

/// Every adapter wgpu can see, in the order that index selectors refer to.
pub fn list_adapters() -> Vec<AdapterReport> {
    adapters(&instance()).iter().enumerate().map(|(i, a)| AdapterReport::new(i, &a.get_info(), &a.limits())).collect()
}

/// Whether a hardware (non-CPU) adapter exists: what the engine choice `auto` asks.
pub fn hardware_adapter_available() -> bool {
    adapters(&instance()).iter().any(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
}

/// Picks the adapter that `selector` names (see the module docs).
fn choose(list: Vec<wgpu::Adapter>, selector: Option<&str>) -> Result<wgpu::Adapter> {
    let available = || {
        let names: Vec<String> = list
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let info = a.get_info();
                format!("{i}: {} ({:?}, {})", info.name, info.backend, device_type_name(info.device_type))
            })
            .collect();
        if names.is_empty() { "none".to_string() } else { names.join("; ") }
    };
    let sel = selector.map(str::trim).filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("auto"));
    let pick = match sel {
        None => list.first().cloned(),
        Some(s) => {
            let lower = s.to_ascii_lowercase();
            let kind = match lower.as_str() {
                "discrete" | "gpu" => Some(wgpu::DeviceType::DiscreteGpu),
                "integrated" => Some(wgpu::DeviceType::IntegratedGpu),
                "virtual" => Some(wgpu::DeviceType::VirtualGpu),
                "cpu" | "software" => Some(wgpu::DeviceType::Cpu),
                _ => None,
            };
            if let Some(kind) = kind {
                list.iter().find(|a| a.get_info().device_type == kind).cloned()
            } else if let Ok(i) = lower.parse::<usize>() {
                list.get(i).cloned()
            } else {
                list.iter().find(|a| a.get_info().name.to_ascii_lowercase().contains(&lower)).cloned()
            }
        }
    };
    pick.ok_or_else(|| {
        Error::gpu(format!(
            "no adapter matches {:?} (kinds: discrete, integrated, virtual, cpu; an index; or part of a name); \
             available: {}",
            sel.unwrap_or("auto"),
            available()
        ))
    })
}

/// The limits to request: WebGPU defaults where the adapter meets them, raised to the adapter's
/// own values for everything that bounds N or the workgroup shape.
fn required_limits(adapter: &wgpu::Limits) -> wgpu::Limits {
    let base = if wgpu::Limits::default().check_limits(adapter) {
        wgpu::Limits::default()
    } else {
        wgpu::Limits::downlevel_defaults()
    };
    wgpu::Limits {
        max_storage_buffer_binding_size: adapter.max_storage_buffer_binding_size,
        max_buffer_size: adapter.max_buffer_size,
        max_compute_workgroup_storage_size: adapter.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: adapter.max_compute_invocations_per_workgroup,
        max_compute_workgroups_per_dimension: adapter.max_compute_workgroups_per_dimension,
        max_compute_workgroup_size_x: adapter.max_compute_workgroup_size_x,
        max_storage_buffers_per_shader_stage: adapter.max_storage_buffers_per_shader_stage,
        ..base
    }
}

/// Key of a compiled pipeline: shader name, generated constants, checked or not.
pub(crate) type PipelineKey = (&'static str, String, bool);

/// What made a context unusable: a message, and the wgpu error where there is one.
pub(crate) type Lost = (String, Option<Arc<wgpu::Error>>);

/// An open device and queue, with the adapter's identity and a cache of compiled pipelines.
/// Cloning is cheap (the device and queue are reference-counted), so one context can serve
/// many engines.
#[derive(Clone)]
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// The first error wgpu reported outside an error scope (validation, OOM, device loss): its
    /// message, and the wgpu error itself where there is one (a lost device gives only a message).
    pub(crate) lost: Arc<Mutex<Option<Lost>>>,
    /// Compiled pipelines with the full WGSL each was compiled from.
    pub(crate) pipelines: Arc<Mutex<HashMap<PipelineKey, (wgpu::ComputePipeline, String)>>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext").field("adapter", &self.info.name).field("backend", &self.info.backend).finish()
    }
}

impl GpuContext {
    /// Opens the adapter that `selector` names, or `FRFLOW_DEVICE`'s, or the best one (discrete
    /// before integrated before software).
    pub fn new(selector: Option<&str>) -> Result<Self> {
        let env = std::env::var(DEVICE_ENV).ok();
        let selector = selector.or(env.as_deref());
        let instance = instance();
        let adapter = choose(adapters(&instance), selector)?;
        let info = adapter.get_info();
        let limits = required_limits(&adapter.limits());
        let desc = wgpu::DeviceDescriptor {
            label: Some("frflow"),
            // Timestamps, where offered, let `frflow bench` time passes on the device itself.
            required_features: adapter.features() & wgpu::Features::TIMESTAMP_QUERY,
            required_limits: limits,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| Error::gpu_from(format_args!("could not open a device on {}", info.name), e))?;
        let ctx = Self::wrap(device, queue, info);
        // The default handler panics; record the message instead and report it as Error::Gpu at
        // the next synchronisation point. Only for devices frflow owns: a host application's
        // device keeps its own handlers (see `from_device`).
        let slot = ctx.lost.clone();
        ctx.device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            s.get_or_insert_with(|| (e.to_string(), Some(Arc::new(e))));
        }));
        let slot = ctx.lost.clone();
        ctx.device.set_device_lost_callback(move |reason, message| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            s.get_or_insert_with(|| (format!("device lost ({reason:?}): {message}"), None));
        });
        Ok(ctx)
    }

    /// Wraps a device and queue that the host application already owns. Its limits are those the
    /// device was created with: request at least [`GpuContext::required_limits`] for the models
    /// you will run (wgpu's defaults allow 8 storage buffers per stage; frflow's shaders bind up
    /// to 13), else the engine's construction names the limits that fall short. frflow leaves the
    /// device's uncaptured-error handler and device-lost callback alone and catches its own
    /// errors with error scopes (and a failed wait on the device).
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, adapter_info: wgpu::AdapterInfo) -> Self {
        Self::wrap(device, queue, adapter_info)
    }

    fn wrap(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        let limits = device.limits();
        let lost = Arc::new(Mutex::new(None));
        GpuContext { device, queue, info, limits, lost, pipelines: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// The device limits the GPU engine needs for `model` with `n` particles, on top of wgpu's
    /// downlevel defaults: the storage buffers one shader binds, the largest binding and buffer
    /// (the packed particles, or the quadrature nodes of D and D′), the kernel-sum tile's
    /// workgroup storage and the workgroup size. For a host application that opens its own
    /// device for [`GpuContext::from_device`]; data sets of the energies may need larger
    /// bindings, which the engine checks when it is built.
    pub fn required_limits(model: &Model, n: usize) -> wgpu::Limits {
        let p = kernels::packed_len(model.space.dim) as u64;
        let q =
            if model.variant.uses_quadrature() && model.has_divergence() { model.quadrature.len() as u64 } else { 1 };
        let largest = (n.max(1) as u64 * p * 16 * q).max(n as u64 * 8);
        let base = wgpu::Limits::downlevel_defaults();
        // The kernel sum's source tile, as `check_kernel_workgroup` counts it (fixed point: hi + lo).
        let tile = kernels::KERNEL_WG * p as u32 * 16 * 2;
        let workgroup = kernels::ELEMENT_WG.max(kernels::KERNEL_WG).max(kernels::REDUCE_WG);
        wgpu::Limits {
            max_storage_buffers_per_shader_stage: kernels::max_storage_bindings(),
            max_storage_buffer_binding_size: largest.max(base.max_storage_buffer_binding_size),
            max_buffer_size: largest.max(base.max_buffer_size),
            max_compute_workgroup_storage_size: tile.max(base.max_compute_workgroup_storage_size),
            max_compute_invocations_per_workgroup: workgroup.max(base.max_compute_invocations_per_workgroup),
            max_compute_workgroup_size_x: workgroup.max(base.max_compute_workgroup_size_x),
            ..base
        }
    }

    /// Error::Invalid naming every limit of this device below what `model` with `n` particles
    /// needs (see [`GpuContext::required_limits`]). Buffer sizes are left to the engine's own
    /// check, whose Error::TooLarge also gives the largest N that fits.
    pub(crate) fn check_limits_for(&self, model: &Model, n: usize) -> Result<()> {
        let mut short = Vec::new();
        Self::required_limits(model, n).check_limits_with_fail_fn(&self.limits, false, |name, need, have| {
            if !matches!(name, "max_storage_buffer_binding_size" | "max_buffer_size") {
                short.push(format!("{name} = {have} (needs {need})"));
            }
        });
        if short.is_empty() {
            return Ok(());
        }
        Err(Error::invalid(
            "device limits",
            short.join(", "),
            "a device opened with at least GpuContext::required_limits(&model, n) (GpuContext::new requests them)",
        ))
    }

    /// The name and full WGSL source (generated constants and prelude included) of every
    /// pipeline compiled on this context so far, sorted: what the device actually runs, for
    /// inspection (`tests/kernel_op_count.rs` counts the slow operations per pair in them).
    pub fn shader_sources(&self) -> Vec<(String, String)> {
        let cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<(String, String)> = cache.iter().map(|(k, (_, src))| (k.0.to_string(), src.clone())).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Whether the device can time passes with timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The adapter's identity.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The limits the device was opened with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The report `frflow info` prints for this device.
    pub fn report(&self) -> AdapterReport {
        AdapterReport::new(0, &self.info, &self.limits)
    }

    /// Whether this is a software (CPU) adapter such as lavapipe.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Error::Gpu if wgpu reported an error outside an error scope or lost the device.
    pub(crate) fn check_lost(&self) -> Result<()> {
        match self.lost.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some((message, source)) => Err(Error::Gpu {
                message: message.clone(),
                source: source.clone().map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
            }),
            None => Ok(()),
        }
    }

    /// Blocks until the queue is idle; device loss and timeouts become Error::Gpu.
    pub(crate) fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::gpu_from("waiting for the device", e))?;
        self.check_lost()
    }
}
