//! Wire types of the layover policy (`proto/layover/v1`), generated at build time.
//!
//! These are the contract between the compiler and the filters. They are deliberately dumb:
//! validation and indexing happen when `layover-core` turns them into a `CompiledPolicy`.

#![forbid(unsafe_code)]

/// Version 1 of the policy schema.
pub mod v1 {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/layover.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/layover.v1.serde.rs"));
}

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;
