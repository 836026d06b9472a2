//! Generates the two protobuf generations from `proto/v{1,2}/im_protocol.proto`.
//!
//! Both files declare `package im.protocol`, so each is compiled in its own
//! prost-build pass into its own `OUT_DIR` subfolder (`$OUT_DIR/v1`,
//! `$OUT_DIR/v2`); `src/pb.rs` includes them as `pb::v1` and `pb::v2`.
//! `protoc` comes from `protoc-bin-vendored`, so a plain `cargo build` works
//! on a machine without protoc installed.

use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("../../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;

    println!("cargo:rerun-if-changed={}", proto_root.display());
    for generation in ["v1", "v2"] {
        let dir = proto_root.join(generation);
        let file = dir.join("im_protocol.proto");
        println!("cargo:rerun-if-changed={}", file.display());

        let target = out_dir.join(generation);
        std::fs::create_dir_all(&target)?;

        let mut config = prost_build::Config::new();
        config
            .protoc_executable(&protoc)
            .protoc_arg(format!("--proto_path={}", include.display()))
            .out_dir(&target)
            // bytes fields (`content`, `body`) as refcounted `bytes::Bytes`.
            .bytes(["."])
            // deterministic encoding order for map fields (v1 `extra`).
            .btree_map(["."]);
        config.compile_protos(&[file], &[dir])?;
    }
    Ok(())
}
