//! The dependency-direction invariant of docs/architecture.md, on the real
//! workspace: fails when an arrow points the wrong way.

use xtask::tidy::{Kind, Workspace, check};

#[test]
fn workspace_is_tidy() {
    let ws = match Workspace::load(&xtask::workspace_root()) {
        Ok(ws) => ws,
        Err(e) => panic!("cannot read the manifests: {e:#}"),
    };
    // Not vacuous: the crates of the architecture are all there.
    for (name, kind) in [
        ("im-core", Kind::Lib),
        ("im-protocol", Kind::Lib),
        ("im-client", Kind::Lib),
        ("im-server", Kind::Bin),
        ("xtask", Kind::Tool),
    ] {
        assert!(
            ws.members.iter().any(|m| m.name == name && m.kind == kind),
            "{name} not found among {:?}",
            ws.members.iter().map(|m| &m.name).collect::<Vec<_>>()
        );
    }
    let problems: Vec<String> = check(&ws).iter().map(ToString::to_string).collect();
    assert!(
        problems.is_empty(),
        "cargo xtask tidy found {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
