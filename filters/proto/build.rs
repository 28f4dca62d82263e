//! Generates the policy wire types from `proto/layover/v1/*.proto`.
//!
//! `protox` parses the schema in pure Rust, so no system `protoc` is needed; `pbjson-build`
//! adds the canonical proto3 JSON mapping used by `layover compile --json`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not baked in with env!(): cargo reuses a build script's binary across
    // checkouts that share a target directory, and a baked-in path points at the first one.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let schema = root.join("layover/v1/policy.proto");
    println!("cargo:rerun-if-changed={}", schema.display());

    let descriptors = protox::compile([&schema], [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("layover_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;

    prost_build::Config::new()
        .file_descriptor_set_path(&descriptor_path)
        .skip_protoc_run()
        .compile_protos(&[&schema], &[&root])?;

    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptor_path)?)?
        .build(&[".layover"])?;
    Ok(())
}
