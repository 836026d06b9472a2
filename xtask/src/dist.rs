//! `cargo xtask dist`: the release tarball of im-server.
//!
//! 1. `cargo build --release --locked -p im-server` with the workspace's
//!    release profile as it is (other release builds keep their symbols);
//! 2. a stripped copy of the binary (`strip --strip-all` from binutils, or
//!    `$STRIP`);
//! 3. `<target-dir>/dist/im-server-<version>-<target-triple>.tar.gz` holding
//!    one directory `im-server-<version>-<target-triple>/` with the binary,
//!    `config/config.example.yaml`, `README.md` and `LICENSE`, and beside it
//!    `….tar.gz.sha256` in `sha256sum` format (`sha256sum -c` checks it).
//!
//! Packing is reproducible: entries in a fixed order, mtime 0, owner root,
//! fixed modes, no gzip timestamp, so one binary always gives one tarball. [`assemble`] takes the path of an
//! already built binary, so a test can pack a fake one.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `cargo xtask dist --help`.
pub const USAGE: &str = "\
usage: cargo xtask dist

Builds im-server with `cargo build --release --locked`, strips a copy of the
binary and writes into <target-dir>/dist/:
  im-server-<version>-<target-triple>.tar.gz         binary, config/config.example.yaml,
                                                     README.md, LICENSE
  im-server-<version>-<target-triple>.tar.gz.sha256  its checksum (sha256sum -c)
<target-dir> is CARGO_TARGET_DIR or ./target, as cargo decides.";

/// The package that is shipped.
pub const PACKAGE: &str = "im-server";

/// Files of the repository that go into the tarball beside the binary:
/// (path in the repository, path inside the tarball's top directory).
pub const FILES: &[(&str, &str)] = &[
    ("config/config.example.yaml", "config/config.example.yaml"),
    ("README.md", "README.md"),
    ("LICENSE", "LICENSE"),
];

/// What [`assemble`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dist {
    /// `…/im-server-<version>-<target>.tar.gz`.
    pub tarball: PathBuf,
    /// `<tarball>.sha256`.
    pub checksum: PathBuf,
    /// Lower-case hex SHA-256 of the tarball.
    pub sha256: String,
    /// Size of the tarball in bytes.
    pub size: u64,
}

/// Entry point of `cargo xtask dist`.
pub fn main(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    if let Some(arg) = args.first() {
        bail!("unexpected argument '{arg}'\n\n{USAGE}");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let (version, target_dir) = metadata(&cargo, root)?;
    let target = host_target()?;

    let status = Command::new(&cargo)
        .current_dir(root)
        .args(["build", "--release", "--locked", "-p", PACKAGE])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release --locked -p {PACKAGE} failed");
    }
    let built = target_dir.join("release").join(PACKAGE);
    if !built.is_file() {
        bail!("{} not found after the build", built.display());
    }

    let out_dir = target_dir.join("dist");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let stripped = out_dir.join(format!("{PACKAGE}.stripped"));
    strip(&built, &stripped)?;

    let dist = assemble(root, &stripped, &out_dir, &version, &target);
    std::fs::remove_file(&stripped).with_context(|| format!("removing {}", stripped.display()))?;
    let dist = dist?;
    println!(
        "dist: {} ({} bytes)\n      {}\n      sha256 {}",
        dist.tarball.display(),
        dist.size,
        dist.checksum.display(),
        dist.sha256
    );
    Ok(())
}

/// The base name of the tarball and of its top directory:
/// `im-server-<version>-<target>`.
pub fn archive_name(version: &str, target: &str) -> String {
    format!("{PACKAGE}-{version}-{target}")
}

/// Packs `binary` (already built and stripped) and [`FILES`] from `root`
/// into `out_dir/<archive_name>.tar.gz`, and writes its `.sha256` beside it.
pub fn assemble(
    root: &Path,
    binary: &Path,
    out_dir: &Path,
    version: &str,
    target: &str,
) -> anyhow::Result<Dist> {
    let name = archive_name(version, target);
    let tarball = out_dir.join(format!("{name}.tar.gz"));
    // Written under a temporary name, so a failure leaves no half tarball.
    let partial = out_dir.join(format!("{name}.tar.gz.part"));
    if let Err(e) = write_tarball(root, binary, &partial, &name) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &tarball)
        .with_context(|| format!("renaming to {}", tarball.display()))?;

    let (sha256, size) = sha256_file(&tarball)?;
    let checksum = out_dir.join(format!("{name}.tar.gz.sha256"));
    std::fs::write(&checksum, format!("{sha256}  {name}.tar.gz\n"))
        .with_context(|| format!("writing {}", checksum.display()))?;
    Ok(Dist {
        tarball,
        checksum,
        sha256,
        size,
    })
}

/// Writes the gzipped tar of `binary` and [`FILES`] under `top/` to `path`.
fn write_tarball(root: &Path, binary: &Path, path: &Path, top: &str) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut tar = tar::Builder::new(GzEncoder::new(BufWriter::new(file), Compression::best()));
    add_file(&mut tar, binary, &format!("{top}/{PACKAGE}"), 0o755)?;
    for (from, to) in FILES {
        add_file(&mut tar, &root.join(from), &format!("{top}/{to}"), 0o644)?;
    }
    let written = || format!("writing {}", path.display());
    let gz = tar.into_inner().with_context(written)?;
    gz.finish()
        .with_context(written)?
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)
        .with_context(written)?
        .sync_all()
        .with_context(written)?;
    Ok(())
}

/// Appends the regular file `src` as `path` with `mode`, owner root, mtime 0.
fn add_file<W: Write>(
    tar: &mut tar::Builder<W>,
    src: &Path,
    path: &str,
    mode: u32,
) -> anyhow::Result<()> {
    let data = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(u64::try_from(data.len())?);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    tar.append_data(&mut header, path, data.as_slice())
        .with_context(|| format!("adding {path}"))?;
    Ok(())
}

/// Lower-case hex SHA-256 and size of the file at `path`.
pub fn sha256_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// Writes a copy of `src` without symbols or debug info to `dst`.
fn strip(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let strip = std::env::var("STRIP").unwrap_or_else(|_| "strip".to_owned());
    let status = Command::new(&strip)
        .arg("--strip-all")
        .arg("-o")
        .arg(dst)
        .arg(src)
        .status()
        .with_context(|| format!("running {strip} (binutils; set STRIP to use another)"))?;
    if !status.success() {
        bail!("{strip} --strip-all {} failed", src.display());
    }
    Ok(())
}

/// The version of [`PACKAGE`] and the target directory, from `cargo metadata`.
fn metadata(cargo: &str, root: &Path) -> anyhow::Result<(String, PathBuf)> {
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let version = meta
        .get("packages")
        .and_then(Value::as_array)
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(PACKAGE))
        })
        .and_then(|p| p.get("version"))
        .and_then(Value::as_str)
        .with_context(|| format!("cargo metadata lists no package {PACKAGE}"))?;
    let target_dir = meta
        .get("target_directory")
        .and_then(Value::as_str)
        .context("cargo metadata has no target_directory")?;
    Ok((version.to_owned(), PathBuf::from(target_dir)))
}

/// The host target triple, from `rustc -vV`.
fn host_target() -> anyhow::Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let out = Command::new(&rustc)
        .arg("-vV")
        .output()
        .with_context(|| format!("running {rustc} -vV"))?;
    if !out.status.success() {
        bail!("{rustc} -vV failed");
    }
    parse_host(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("no host line in `{rustc} -vV`"))
}

/// The `host: <triple>` line of `rustc -vV`.
pub fn parse_host(rustc_vv: &str) -> Option<String> {
    rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("host:"))
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}
