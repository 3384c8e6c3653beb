//! Provider definitions: everything that differs between platforms, as data.
//!
//! One TOML file per platform under `providers/` (embedded in the binary; users add their own from
//! a directory). This module holds the model, its validation (errors name the file, the key and
//! what is wrong) and the [`Registry`] of loaded definitions. Nothing here knows a platform by name.

mod model;
mod registry;
mod validate;

pub use model::*;
pub use registry::{BUILTIN, COMMON, Provider, Registry, RegistryError};
pub use validate::{Endpoints, SpecError};
