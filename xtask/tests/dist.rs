//! `cargo xtask dist` packing, on a small fake binary (no release build):
//! the tarball's entries, their modes and contents, and the `.sha256` file.

// Helpers outside #[test] fns may unwrap too.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use xtask::dist::{FILES, archive_name, assemble, parse_host, sha256_file};

const VERSION: &str = "0.1.0";
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// (path, mode, size, contents) of every entry, in archive order.
fn entries(tarball: &Path) -> Vec<(String, u32, u64, Vec<u8>)> {
    let file = std::fs::File::open(tarball).unwrap();
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        assert_eq!(header.entry_type(), tar::EntryType::Regular);
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push((path, header.mode().unwrap(), header.size().unwrap(), data));
    }
    out
}

#[test]
fn tarball_holds_binary_config_readme_license_and_a_checksum() {
    let root = xtask::workspace_root();
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("im-server");
    std::fs::write(&fake, b"\x7fELF not really a server\n").unwrap();
    let out_dir = tmp.path().join("dist");
    std::fs::create_dir(&out_dir).unwrap();

    let dist = assemble(&root, &fake, &out_dir, VERSION, TARGET).unwrap();

    let name = "im-server-0.1.0-x86_64-unknown-linux-gnu";
    assert_eq!(archive_name(VERSION, TARGET), name);
    assert_eq!(dist.tarball, out_dir.join(format!("{name}.tar.gz")));
    assert_eq!(dist.checksum, out_dir.join(format!("{name}.tar.gz.sha256")));

    let got = entries(&dist.tarball);
    let listing: Vec<(&str, u32)> = got.iter().map(|(p, m, _, _)| (p.as_str(), *m)).collect();
    assert_eq!(
        listing,
        [
            (format!("{name}/im-server").as_str(), 0o755),
            (format!("{name}/config/config.example.yaml").as_str(), 0o644),
            (format!("{name}/README.md").as_str(), 0o644),
            (format!("{name}/LICENSE").as_str(), 0o644),
        ]
    );
    // The binary is the file given, byte for byte; the others come from the repo.
    assert_eq!(got[0].3, std::fs::read(&fake).unwrap());
    for ((from, _), (_, _, size, data)) in FILES.iter().zip(&got[1..]) {
        let want = std::fs::read(root.join(from)).unwrap();
        assert_eq!(*size, want.len() as u64, "{from}");
        assert!(*data == want, "{from} differs in the tarball");
    }
    let license = String::from_utf8(got[3].3.clone()).unwrap();
    assert!(license.starts_with("MIT License"), "{license}");
    assert!(license.contains("im-server developers"), "{license}");

    // `sha256sum` format: hex, two spaces, the tarball's file name.
    let bytes = std::fs::read(&dist.tarball).unwrap();
    let want = format!("{:x}", Sha256::digest(&bytes));
    assert_eq!(dist.sha256, want);
    assert_eq!(dist.size, bytes.len() as u64);
    assert_eq!(
        std::fs::read_to_string(&dist.checksum).unwrap(),
        format!("{want}  {name}.tar.gz\n")
    );
    assert_eq!(
        sha256_file(&dist.tarball).unwrap(),
        (want, bytes.len() as u64)
    );
}

#[test]
fn tarball_is_reproducible() {
    let root = xtask::workspace_root();
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("bin");
    std::fs::write(&fake, b"same input").unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    let first = assemble(&root, &fake, &a, VERSION, TARGET).unwrap();
    let second = assemble(&root, &fake, &b, VERSION, TARGET).unwrap();
    assert_eq!(first.sha256, second.sha256);
}

#[test]
fn missing_binary_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-binary");
    let err = assemble(
        &xtask::workspace_root(),
        &missing,
        tmp.path(),
        VERSION,
        TARGET,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("no-such-binary"), "{err:#}");
    // No half-written tarball (or checksum) is left behind.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn host_triple_from_rustc_vv() {
    let vv = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\n";
    assert_eq!(parse_host(vv).as_deref(), Some("x86_64-unknown-linux-gnu"));
    assert_eq!(parse_host("rustc 1.95.0\n"), None);
}
