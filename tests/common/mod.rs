//! Shared by the GPU test files: one device for all tests of a binary (pipelines are cached on it).

use frflow::engine::gpu::GpuContext;
use std::sync::OnceLock;

/// The adapter named by FRFLOW_DEVICE (default lavapipe), or `None` with a notice; with
/// FRFLOW_REQUIRE_GPU=1 a missing adapter fails the test instead of skipping it.
pub fn context() -> Option<GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        let selector = std::env::var("FRFLOW_DEVICE").unwrap_or_else(|_| "llvmpipe".to_string());
        match GpuContext::new(Some(&selector)) {
            Ok(c) => {
                eprintln!("gpu tests on {:?}", c.adapter_info().name);
                Some(c)
            }
            Err(e) => {
                if std::env::var("FRFLOW_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                    panic!("FRFLOW_REQUIRE_GPU=1 but no adapter matching {selector:?} could be opened: {e}");
                }
                eprintln!("NOTICE: skipping GPU tests, no adapter matching {selector:?}: {e}");
                None
            }
        }
    })
    .clone()
}
