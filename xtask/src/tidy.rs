//! `cargo xtask tidy`: the dependency direction of `docs/architecture.md`,
//! checked on every crate manifest (`crates/*`, `bins/*`, `xtask`), plus
//! manifest hygiene (workspace lints and workspace-inherited dependencies).
//!
//! The layering is the [`RULES`] table. Rules apply to `[dependencies]`,
//! `[build-dependencies]` and their `[target.*]` variants; dev-dependencies
//! are test scaffolding and only have to inherit from the workspace (tests
//! may use `im-testkit`, `im-client`, a bin, tokio, …).

use std::fmt;
use std::path::Path;

use anyhow::{Context, bail};
use toml::{Table, Value};

/// Where a crate lives, which decides its default rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `crates/*`: a library with a row in [`RULES`].
    Lib,
    /// `bins/*`: may depend on anything; only bins and dev-dependencies may
    /// depend on it.
    Bin,
    /// `xtask`.
    Tool,
}

/// What a crate may depend on among the workspace's own crates.
#[derive(Debug, Clone, Copy)]
pub enum Internal {
    /// Exactly these library crates (or none).
    Only(&'static [&'static str]),
    /// Any library crate (never a bin).
    AnyLib,
}

/// One row of the layering table.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Package name the rule is for.
    pub krate: &'static str,
    /// Our crates it may depend on.
    pub internal: Internal,
    /// External crates it must not name; `foo-*` matches by prefix.
    pub forbidden: &'static [&'static str],
    /// Why, quoted in the message (from architecture.md).
    pub why: &'static str,
}

/// Crates that do network, storage or cache I/O.
const IO_CRATES: &[&str] = &[
    "tokio",
    "tokio-*",
    "mio",
    "socket2",
    "hyper",
    "hyper-*",
    "http-body-util",
    "fastwebsockets",
    "diesel",
    "diesel-*",
    "diesel_*",
    "libsqlite3-sys",
    "redis",
    "redis-*",
    "deadpool",
    "deadpool-*",
];

/// What the service layer never names: storage, cache and HTTP/WS crates.
const ADAPTER_CRATES: &[&str] = &[
    "diesel",
    "diesel-*",
    "diesel_*",
    "libsqlite3-sys",
    "redis",
    "redis-*",
    "deadpool",
    "deadpool-*",
    "hyper",
    "hyper-*",
    "http-body-util",
    "fastwebsockets",
];

/// What no library crate names: the metrics recorders and their plumbing.
/// Libraries record through the `metrics` facade (a no-op without a
/// recorder); which recorder runs, and where it is exposed, is the bin's
/// choice.
const METRICS_RECORDERS: &[&str] = &["metrics-exporter-*", "metrics-util"];

/// The dependency direction of architecture.md, one row per library crate.
/// A new crate under `crates/` needs a row here before tidy passes.
pub const RULES: &[Rule] = &[
    Rule {
        krate: "im-core",
        internal: Internal::Only(&[]),
        forbidden: IO_CRATES,
        why: "im-core is the shared vocabulary: no I/O crate and no crate of ours",
    },
    Rule {
        krate: "im-protocol",
        internal: Internal::Only(&["im-core"]),
        forbidden: &[],
        why: "wire formats know the domain types only, never the service layer, storage or each other",
    },
    Rule {
        krate: "im-repository",
        internal: Internal::Only(&["im-core"]),
        forbidden: &[],
        why: "storage adapters implement im-core ports and know nothing else of ours",
    },
    Rule {
        krate: "im-cache",
        internal: Internal::Only(&["im-core"]),
        forbidden: &[],
        why: "cache adapters implement im-core ports and know nothing else of ours",
    },
    Rule {
        krate: "im-service",
        internal: Internal::Only(&["im-core", "im-protocol"]),
        forbidden: ADAPTER_CRATES,
        why: "the service layer holds Arc<dyn Port> and never names diesel, redis, deadpool, hyper or fastwebsockets",
    },
    Rule {
        krate: "im-transport",
        internal: Internal::Only(&["im-service", "im-protocol", "im-core"]),
        forbidden: &[],
        why: "the network edge calls the services; concrete adapters are wired in bins only",
    },
    Rule {
        krate: "im-client",
        internal: Internal::Only(&["im-protocol", "im-core"]),
        forbidden: &[],
        why: "the client speaks the protocol and knows no server crate",
    },
    Rule {
        krate: "im-testkit",
        internal: Internal::AnyLib,
        forbidden: &[],
        why: "the test kit may use any library crate, never a bin",
    },
    Rule {
        krate: "xtask",
        internal: Internal::Only(&[]),
        forbidden: &[],
        why: "project chores read files; they do not link the product",
    },
];

/// One crate manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Path relative to the workspace root, e.g. `crates/im-core/Cargo.toml`.
    pub path: String,
    pub kind: Kind,
    /// `package.name`.
    pub name: String,
    pub doc: Table,
}

/// The manifests tidy looks at.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// `[workspace.dependencies]` of the root manifest (for renames).
    pub workspace_deps: Table,
    pub members: Vec<Manifest>,
}

impl Workspace {
    /// Reads the root `Cargo.toml` and every `crates/*/Cargo.toml`,
    /// `bins/*/Cargo.toml` and `xtask/Cargo.toml` under `root`.
    pub fn load(root: &Path) -> anyhow::Result<Self> {
        let root_text = read(&root.join("Cargo.toml"))?;
        let mut members = Vec::new();
        for (dir, kind) in [("crates", Kind::Lib), ("bins", Kind::Bin)] {
            let mut subdirs = Vec::new();
            let entries =
                std::fs::read_dir(root.join(dir)).with_context(|| format!("listing {dir}/"))?;
            for entry in entries {
                let entry = entry.with_context(|| format!("listing {dir}/"))?;
                if entry.path().join("Cargo.toml").is_file() {
                    subdirs.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
            subdirs.sort();
            for sub in subdirs {
                let rel = format!("{dir}/{sub}/Cargo.toml");
                members.push((rel.clone(), kind, read(&root.join(&rel))?));
            }
        }
        let rel = "xtask/Cargo.toml".to_owned();
        members.push((rel.clone(), Kind::Tool, read(&root.join(&rel))?));
        Self::parse(&root_text, members)
    }

    /// Builds a workspace from manifest texts: `(path, kind, text)`.
    pub fn parse(
        root_manifest: &str,
        members: Vec<(String, Kind, String)>,
    ) -> anyhow::Result<Self> {
        let root: Table = root_manifest
            .parse()
            .context("parsing the root Cargo.toml")?;
        let workspace_deps = root
            .get("workspace")
            .and_then(|w| w.get("dependencies"))
            .and_then(Value::as_table)
            .cloned()
            .unwrap_or_default();
        let mut parsed = Vec::with_capacity(members.len());
        for (path, kind, text) in members {
            let doc: Table = text.parse().with_context(|| format!("parsing {path}"))?;
            let Some(name) = doc
                .get("package")
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
            else {
                bail!("{path}: no package.name");
            };
            let name = name.to_owned();
            parsed.push(Manifest {
                path,
                kind,
                name,
                doc,
            });
        }
        Ok(Self {
            workspace_deps,
            members: parsed,
        })
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// One problem, naming the manifest, the crate and the offending edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub krate: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.path, self.krate, self.message)
    }
}

/// A dependency as declared in one section.
struct Dep<'a> {
    /// Section it is declared in, e.g. `[dependencies]`.
    section: String,
    /// The key (the name the crate uses it by).
    key: &'a str,
    /// The package it resolves to (after `package = …` renames).
    package: String,
    /// Whether the section is dev-dependencies.
    dev: bool,
    /// Whether it says `workspace = true`.
    inherited: bool,
}

/// Every dependency of `doc`, in all sections including `[target.*]` ones.
fn deps<'a>(doc: &'a Table, workspace_deps: &Table) -> Vec<Dep<'a>> {
    let mut tables: Vec<(String, &'a Table)> = Vec::new();
    for kind in ["dependencies", "build-dependencies", "dev-dependencies"] {
        if let Some(t) = doc.get(kind).and_then(Value::as_table) {
            tables.push((format!("[{kind}]"), t));
        }
    }
    if let Some(targets) = doc.get("target").and_then(Value::as_table) {
        for (cfg, t) in targets {
            for kind in ["dependencies", "build-dependencies", "dev-dependencies"] {
                if let Some(t) = t.get(kind).and_then(Value::as_table) {
                    tables.push((format!("[target.'{cfg}'.{kind}]"), t));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (section, table) in tables {
        let dev = section.ends_with("dev-dependencies]");
        for (key, spec) in table {
            let inherited = spec.get("workspace").and_then(Value::as_bool) == Some(true);
            let renamed = spec.get("package").and_then(Value::as_str).or_else(|| {
                if inherited {
                    workspace_deps
                        .get(key)
                        .and_then(|w| w.get("package"))
                        .and_then(Value::as_str)
                } else {
                    None
                }
            });
            let package = renamed.unwrap_or(key).to_owned();
            out.push(Dep {
                section: section.clone(),
                key,
                package,
                dev,
                inherited,
            });
        }
    }
    out
}

/// Whether `name` matches `pattern` (`foo-*`: any name starting with `foo-`).
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// The rule of `name`, if it has one.
pub fn rule_for(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.krate == name)
}

/// Checks every manifest of `ws`; an empty result means tidy.
pub fn check(ws: &Workspace) -> Vec<Violation> {
    let mut out = Vec::new();
    for m in &ws.members {
        let mut report = |message: String| {
            out.push(Violation {
                path: m.path.clone(),
                krate: m.name.clone(),
                message,
            });
        };

        let lints = m
            .doc
            .get("lints")
            .and_then(|l| l.get("workspace"))
            .and_then(Value::as_bool);
        if lints != Some(true) {
            report(
                "does not inherit the workspace lints: add `[lints]` with `workspace = true`"
                    .to_owned(),
            );
        }

        let rule = match (m.kind, rule_for(&m.name)) {
            (Kind::Bin, _) => None,
            (_, Some(rule)) => Some(rule),
            (_, None) => {
                report(format!(
                    "has no layering rule: add a row for `{}` to RULES in xtask/src/tidy.rs (and to docs/architecture.md)",
                    m.name
                ));
                None
            }
        };

        for dep in deps(&m.doc, &ws.workspace_deps) {
            if !dep.inherited {
                report(format!(
                    "{} `{}` does not inherit from [workspace.dependencies]: write `{}.workspace = true` \
                     (and add it to the root Cargo.toml)",
                    dep.section, dep.key, dep.key
                ));
            }
            if dep.dev || dep.package == m.name {
                continue;
            }
            let target = ws.members.iter().find(|t| t.name == dep.package);
            if let Some(t) = target {
                if t.kind == Kind::Bin && m.kind != Kind::Bin {
                    report(format!(
                        "{} -> {} is forbidden ({}): only bins, and dev-dependencies of tests, may depend on a bin",
                        m.name, t.name, dep.section
                    ));
                    continue;
                }
            }
            let Some(rule) = rule else { continue };
            match target {
                Some(t) => {
                    let allowed = match rule.internal {
                        Internal::Only(list) => list.contains(&t.name.as_str()),
                        Internal::AnyLib => t.kind == Kind::Lib,
                    };
                    if !allowed {
                        report(format!(
                            "{} -> {} is forbidden ({}): {} may depend on {} among our crates; {}",
                            m.name,
                            t.name,
                            dep.section,
                            m.name,
                            describe(rule.internal),
                            rule.why
                        ));
                    }
                }
                None => {
                    if m.kind == Kind::Lib {
                        if let Some(p) = METRICS_RECORDERS.iter().find(|p| matches(p, &dep.package))
                        {
                            report(format!(
                                "{} -> {} (matches `{p}`) is forbidden ({}): libraries record through the \
                                 `metrics` facade; the recorder is installed by the bin",
                                m.name, dep.package, dep.section
                            ));
                            continue;
                        }
                    }
                    if let Some(p) = rule.forbidden.iter().find(|p| matches(p, &dep.package)) {
                        let via = if p.ends_with('*') {
                            format!(" (matches `{p}`)")
                        } else {
                            String::new()
                        };
                        report(format!(
                            "{} -> {}{} is forbidden ({}): {}",
                            m.name, dep.package, via, dep.section, rule.why
                        ));
                    }
                }
            }
        }
    }
    out
}

fn describe(internal: Internal) -> String {
    match internal {
        Internal::Only([]) => "none".to_owned(),
        Internal::Only(list) => list.join(", "),
        Internal::AnyLib => "any library crate".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = r#"
        [workspace]
        members = ["crates/*", "bins/*", "xtask"]
        [workspace.dependencies]
        im-core = { path = "crates/im-core" }
        tokio = "1"
        db = { package = "diesel", version = "2" }
    "#;

    fn manifest(name: &str, deps: &str) -> String {
        format!("[package]\nname = \"{name}\"\n\n[lints]\nworkspace = true\n\n{deps}\n")
    }

    fn lib(name: &str, deps: &str) -> (String, Kind, String) {
        (
            format!("crates/{name}/Cargo.toml"),
            Kind::Lib,
            manifest(name, deps),
        )
    }

    /// A small, tidy workspace; `extra` members are added, replacing those
    /// at the same path.
    fn ws(extra: Vec<(String, Kind, String)>) -> Workspace {
        let mut members = vec![
            lib("im-core", ""),
            lib("im-protocol", "[dependencies]\nim-core.workspace = true"),
            lib(
                "im-service",
                "[dependencies]\nim-core.workspace = true\ntokio.workspace = true",
            ),
            (
                "bins/im-server/Cargo.toml".to_owned(),
                Kind::Bin,
                manifest(
                    "im-server",
                    "[dependencies]\nim-service.workspace = true\ndb.workspace = true",
                ),
            ),
        ];
        members.retain(|(path, _, _)| extra.iter().all(|(p, _, _)| p != path));
        members.extend(extra);
        Workspace::parse(ROOT, members).unwrap()
    }

    fn messages(ws: &Workspace) -> Vec<String> {
        check(ws).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn tidy_workspace_passes() {
        assert_eq!(messages(&ws(vec![])), Vec::<String>::new());
    }

    #[test]
    fn io_crate_in_core_is_caught() {
        let got = messages(&ws(vec![lib(
            "im-core",
            "[dependencies]\ntokio.workspace = true",
        )]));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with(
                "crates/im-core/Cargo.toml: im-core: im-core -> tokio is forbidden ([dependencies])"
            ),
            "{}",
            got[0]
        );
    }

    #[test]
    fn metrics_recorder_in_a_library_is_caught() {
        let got = messages(&ws(vec![lib(
            "im-service",
            "[dependencies]\nim-core.workspace = true\nmetrics.workspace = true\n\
             metrics-exporter-prometheus.workspace = true",
        )]));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].contains("im-service -> metrics-exporter-prometheus (matches `metrics-exporter-*`) is forbidden"),
            "{}",
            got[0]
        );
    }

    #[test]
    fn wrong_internal_arrow_is_caught() {
        let got = messages(&ws(vec![lib(
            "im-repository",
            "[dependencies]\nim-protocol.workspace = true",
        )]));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].contains("im-repository -> im-protocol is forbidden"),
            "{}",
            got[0]
        );
        assert!(
            got[0].contains("may depend on im-core among our crates"),
            "{}",
            got[0]
        );
    }

    #[test]
    fn renamed_adapter_crate_in_service_is_caught() {
        // `db` is diesel under another name, both directly and via the workspace.
        for deps in [
            "[dependencies]\ndb.workspace = true",
            "[build-dependencies]\nstore = { package = \"diesel\", workspace = true }",
            "[target.'cfg(unix)'.dependencies]\nhyper-util.workspace = true",
        ] {
            let members = vec![lib("im-service", deps)];
            let got = messages(&Workspace::parse(ROOT, members).unwrap());
            assert_eq!(got.len(), 1, "{deps}: {got:#?}");
            assert!(got[0].contains("im-service -> "), "{}", got[0]);
            assert!(got[0].contains("never names diesel"), "{}", got[0]);
        }
    }

    #[test]
    fn only_bins_and_dev_dependencies_depend_on_bins() {
        let got = messages(&ws(vec![lib(
            "im-testkit",
            "[dependencies]\nim-server.workspace = true",
        )]));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].contains("im-testkit -> im-server is forbidden"),
            "{}",
            got[0]
        );
        assert!(got[0].contains("only bins"), "{}", got[0]);

        let dev = lib(
            "im-client",
            "[dev-dependencies]\nim-server.workspace = true\ntokio.workspace = true",
        );
        assert_eq!(messages(&ws(vec![dev])), Vec::<String>::new());

        let bin = (
            "bins/im-bench/Cargo.toml".to_owned(),
            Kind::Bin,
            manifest("im-bench", "[dependencies]\nim-server.workspace = true"),
        );
        assert_eq!(messages(&ws(vec![bin])), Vec::<String>::new());
    }

    #[test]
    fn missing_lints_and_inline_versions_are_caught() {
        let text = "[package]\nname = \"im-client\"\n\n[dependencies]\nbytes = \"1\"\nim-core = { path = \"../im-core\" }\n";
        let got = messages(&ws(vec![(
            "crates/im-client/Cargo.toml".to_owned(),
            Kind::Lib,
            text.to_owned(),
        )]));
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0].contains("does not inherit the workspace lints"),
            "{}",
            got[0]
        );
        assert!(got[1].contains("`bytes` does not inherit"), "{}", got[1]);
        assert!(got[2].contains("`im-core` does not inherit"), "{}", got[2]);
    }

    #[test]
    fn unknown_library_crate_needs_a_rule() {
        let got = messages(&ws(vec![lib("im-gadget", "")]));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].contains("has no layering rule"), "{}", got[0]);
    }

    #[test]
    fn patterns() {
        assert!(matches("tokio", "tokio"));
        assert!(!matches("tokio", "tokio-util"));
        assert!(matches("tokio-*", "tokio-util"));
        assert!(!matches("redis-*", "redis"));
        assert!(matches("diesel_*", "diesel_migrations"));
    }

    #[test]
    fn every_rule_names_a_distinct_crate() {
        for (i, r) in RULES.iter().enumerate() {
            assert!(
                RULES.iter().skip(i + 1).all(|o| o.krate != r.krate),
                "{} twice",
                r.krate
            );
            if let Internal::Only(list) = r.internal {
                assert!(
                    list.iter().all(|d| rule_for(d).is_some()),
                    "{} names an unknown crate",
                    r.krate
                );
            }
        }
    }
}
