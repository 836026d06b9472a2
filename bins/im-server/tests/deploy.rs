//! deploy/ stays in step with the server: the example configs load through the
//! real config loader, the compose file parses and its IM_* variables are real
//! config keys, the Dockerfile builds and runs what it should, the systemd unit's
//! command line parses, and the Prometheus job scrapes the HTTP port.
//!
//! Nothing here runs Docker; these are the checks that can run without an engine.
//! Env-sensitive (figment's `Jail`), hence its own test binary, like `config.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::result_large_err
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use figment::Jail;
use im_server::cli::{Command, parse_args};
use im_server::config::{Config, DatabaseKind, env_var_name};
use secrecy::ExposeSecret;
use serde_yaml::Value;

/// A secret long enough not to warn, standing in for the operator's.
const SECRET: &str = "a-long-and-random-production-secret-value-0123456789";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy(path: &str) -> PathBuf {
    repo_root().join("deploy").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The built-in defaults (no file, no environment).
fn defaults() -> Config {
    let mut c = None;
    Jail::expect_with(|_| {
        c = Some(Config::load(None).unwrap());
        Ok(())
    });
    c.unwrap()
}

fn example_configs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(deploy("config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// deploy/config/*.yaml
// ---------------------------------------------------------------------------

#[test]
fn example_configs_load_through_the_config_loader() {
    let files = example_configs();
    let stems: Vec<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(stems, ["cluster", "mysql", "postgres", "sqlite"]);

    for file in &files {
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        Jail::expect_with(|jail| {
            // Release mode, secrets from the environment only: without
            // IM_AUTH__JWT_SECRET the file alone must be refused.
            let err = Config::load(Some(file)).unwrap_err().to_string();
            assert!(
                err.contains("refusing to start in release mode")
                    && err.contains("IM_AUTH__JWT_SECRET"),
                "{stem}: {err}"
            );

            jail.set_env("IM_AUTH__JWT_SECRET", SECRET);
            let c = Config::load(Some(file)).unwrap_or_else(|e| panic!("{stem}: {e}"));
            assert!(c.server.is_release(), "{stem}");
            assert!(c.warnings().is_empty(), "{stem}: {:?}", c.warnings());
            let (kind, redis) = match stem.as_str() {
                "sqlite" => (DatabaseKind::Sqlite, false),
                "postgres" => (DatabaseKind::Postgres, false),
                "mysql" => (DatabaseKind::Mysql, false),
                "cluster" => (DatabaseKind::Postgres, true),
                other => panic!("unexpected deploy/config/{other}.yaml"),
            };
            assert_eq!(c.database.kind, kind, "{stem}");
            assert_eq!(c.redis.enabled, redis, "{stem}");
            Ok(())
        });
    }
}

#[test]
fn example_configs_hold_no_secrets() {
    for file in example_configs() {
        let doc = yaml(&file);
        for (section, key) in [
            ("auth", "jwt_secret"),
            ("database", "password"),
            ("database", "url"),
            ("redis", "password"),
            ("redis", "url"),
        ] {
            let value = &doc[section][key];
            assert!(
                value.is_null(),
                "{}: {section}.{key} belongs in {}, not in the file",
                file.display(),
                env_var_name(&format!("{section}.{key}"))
            );
        }
    }
}

/// The systemd unit makes everything read-only but its `ReadWritePaths`; the
/// files the examples write must lie under them.
#[test]
fn example_configs_write_where_the_systemd_unit_allows() {
    let unit = read(&deploy("im-server.service"));
    let writable: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ReadWritePaths="))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(!writable.is_empty(), "{unit}");
    for file in example_configs() {
        Jail::expect_with(|jail| {
            jail.set_env("IM_AUTH__JWT_SECRET", SECRET);
            let c = Config::load(Some(&file)).unwrap();
            let mut written = vec![c.files.dir.clone()];
            if c.database.kind == DatabaseKind::Sqlite {
                written.push(c.database.path.clone());
            }
            written.extend(c.logger.output.clone());
            for path in written {
                assert!(
                    writable.iter().any(|w| path.starts_with(w)),
                    "{}: {} is outside ReadWritePaths {writable:?}",
                    file.display(),
                    path.display()
                );
            }
            Ok(())
        });
    }
}

// ---------------------------------------------------------------------------
// deploy/docker-compose.yaml
// ---------------------------------------------------------------------------

/// `${VAR:-default}` -> default; `${VAR}` and `${VAR:?message}` -> what an
/// operator would set (the test secret). Compose's interpolation, as far as
/// the file uses it.
fn interpolate(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let inner = &rest[start + 2..end];
        match inner.split_once(":-") {
            Some((_, default)) => out.push_str(default),
            None => out.push_str(SECRET),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// The `environment` map of a compose service, interpolated.
fn environment(service: &Value) -> Vec<(String, String)> {
    service["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (scalar(k), interpolate(&scalar(v))))
        .collect()
}

/// The URL a `["CMD", "curl", …, URL]` health check fetches.
fn curl_url(test: &Value) -> String {
    let argv: Vec<String> = test.as_sequence().unwrap().iter().map(scalar).collect();
    assert_eq!(argv[..2], ["CMD", "curl"], "{argv:?}");
    argv.last().unwrap().clone()
}

fn assert_served_path(url: &str, port: u16) {
    let prefix = format!("http://127.0.0.1:{port}");
    let path = url
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{url} is not on {prefix}"));
    let doc = im_transport::http::openapi_document();
    assert!(
        doc.paths.paths.contains_key(path),
        "{path} is not a route of the HTTP API"
    );
}

#[test]
fn compose_parses_and_its_variables_are_config_keys() {
    let compose = yaml(&deploy("docker-compose.yaml"));
    let services = &compose["services"];
    for name in ["postgres", "redis", "im-server"] {
        assert!(
            services[name]["healthcheck"]["test"].is_sequence(),
            "service {name} needs a healthcheck"
        );
    }
    let im = &services["im-server"];
    for dep in ["postgres", "redis"] {
        assert_eq!(
            im["depends_on"][dep]["condition"].as_str(),
            Some("service_healthy"),
            "im-server must wait for a healthy {dep}"
        );
    }
    let dockerfile = im["build"]["dockerfile"].as_str().unwrap();
    let context = deploy(im["build"]["context"].as_str().unwrap());
    assert!(context.join(dockerfile).is_file(), "{dockerfile}");

    // Every IM_ variable is a config key: it has the `__` the loader needs (other
    // IM_ variables are silently ignored), and the loader, which rejects unknown
    // keys, accepts the lot and builds a valid release configuration from it.
    let env = environment(im);
    let im_vars: Vec<&(String, String)> =
        env.iter().filter(|(k, _)| k.starts_with("IM_")).collect();
    assert!(im_vars.len() >= 8, "{env:?}");
    for (k, _) in &im_vars {
        assert!(
            k.contains("__"),
            "{k}: the loader only reads IM_<SECTION>__<KEY>"
        );
        let dotted = k["IM_".len()..].to_ascii_lowercase().replace("__", ".");
        assert_eq!(&env_var_name(&dotted), k);
    }
    let mut config = None;
    Jail::expect_with(|jail| {
        for (k, v) in &im_vars {
            jail.set_env(k, v);
        }
        config = Some(Config::load(None).unwrap_or_else(|e| panic!("{e}")));
        Ok(())
    });
    let c = config.unwrap();
    assert!(c.server.is_release());
    assert!(!c.uses_default_secret());
    assert_eq!(c.database.kind, DatabaseKind::Postgres);
    assert!(c.redis.enabled);

    // The database credentials are the ones the postgres service creates.
    let pg = environment(&services["postgres"]);
    let pg_env = |k: &str| pg.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let url = c.database_url().expose_secret().to_owned();
    let want = format!(
        "postgres://{}:{}@postgres:5432/{}",
        pg_env("POSTGRES_USER"),
        pg_env("POSTGRES_PASSWORD"),
        pg_env("POSTGRES_DB")
    );
    assert_eq!(url, want);
    assert!(
        c.redis.url().expose_secret().contains("redis:6379"),
        "redis service"
    );

    // Published ports are the server's; the health check hits a real route.
    let published: BTreeSet<u16> = im["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| scalar(p).rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    let ours: BTreeSet<u16> = [c.server.http_port, c.server.ws_port, c.server.tcp_port].into();
    assert_eq!(published, ours);
    assert_served_path(&curl_url(&im["healthcheck"]["test"]), c.server.http_port);
}

// ---------------------------------------------------------------------------
// deploy/Dockerfile
// ---------------------------------------------------------------------------

/// (INSTRUCTION, arguments) of a Dockerfile: comments dropped, `\` line
/// continuations joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (op, args) = current.split_once(' ').unwrap_or((current.as_str(), ""));
                out.push((op.to_ascii_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

fn json_argv(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("exec form expected: {args}: {e}"))
}

#[test]
fn dockerfile_builds_the_server_and_runs_it_unprivileged() {
    let text = read(&deploy("Dockerfile"));
    let ins = instructions(&text);
    let stages: Vec<usize> = ins
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build_from, run_from) = (&ins[stages[0]].1, &ins[stages[1]].1);
    assert!(
        build_from.starts_with("rust:") && build_from.ends_with(" AS builder"),
        "{build_from}"
    );
    assert!(
        run_from.starts_with("debian:") && run_from.ends_with("-slim"),
        "{run_from}"
    );
    let build = &ins[stages[0]..stages[1]];
    let runtime = &ins[stages[1]..];
    assert!(
        build
            .iter()
            .any(|(op, a)| op == "RUN" && a.contains("cargo build --release --locked -p im-server")),
        "builder runs cargo build --release --locked -p im-server"
    );

    let c = defaults();
    let get = |name: &str| -> Vec<&String> {
        runtime
            .iter()
            .filter(|(op, _)| op == name)
            .map(|(_, a)| a)
            .collect()
    };
    // Non-root.
    let user = get("USER");
    assert_eq!(user.len(), 1, "{user:?}");
    let who = user[0].split(':').next().unwrap();
    assert!(who != "root" && who != "0", "USER {who}");
    // The three listeners, at their defaults.
    let exposed: BTreeSet<u16> = get("EXPOSE")
        .iter()
        .flat_map(|a| a.split_whitespace())
        .map(|p| p.parse().unwrap())
        .collect();
    let ours: BTreeSet<u16> = [c.server.http_port, c.server.ws_port, c.server.tcp_port].into();
    assert_eq!(exposed, ours);
    // The health check fetches the liveness route of the HTTP API.
    let health = get("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    let cmd = health[0].split_once("CMD ").unwrap().1;
    let url = json_argv(cmd).last().unwrap().clone();
    assert!(url.ends_with("/health"), "{url}");
    assert_served_path(&url, c.server.http_port);
    // ENTRYPOINT + CMD is a command line the server accepts: serve.
    let mut argv = json_argv(get("ENTRYPOINT")[0]);
    argv.extend(json_argv(get("CMD")[0]));
    assert_eq!(argv[0], "/usr/local/bin/im-server");
    let cli = parse_args(argv).unwrap();
    assert_eq!(cli.command(), Command::Serve);
    // ENV sets config keys only, and they load.
    Jail::expect_with(|jail| {
        for env in get("ENV") {
            let (k, v) = env.split_once('=').unwrap();
            assert!(k.starts_with("IM_") && k.contains("__"), "{k}");
            jail.set_env(k, v);
        }
        Config::load(None).unwrap();
        Ok(())
    });
    // What it copies from the build context exists.
    for (op, args) in runtime.iter().chain(build) {
        if op == "COPY" && !args.starts_with("--from") {
            let src = args.split_whitespace().next().unwrap();
            assert!(
                repo_root().join(src).exists(),
                "COPY {src}: not in the repository"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// deploy/im-server.service, deploy/prometheus.yml
// ---------------------------------------------------------------------------

#[test]
fn systemd_unit_runs_serve_with_a_config_file() {
    let unit = read(&deploy("im-server.service"));
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let argv: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
    let cli = parse_args(argv).unwrap();
    assert_eq!(cli.command(), Command::Serve);
    assert_eq!(
        cli.config.as_deref(),
        Some(Path::new("/etc/im-server/config.yaml"))
    );
    let user = unit.lines().find_map(|l| l.strip_prefix("User=")).unwrap();
    assert_ne!(user, "root");
}

#[test]
fn prometheus_scrapes_metrics_on_the_http_port() {
    let prom = yaml(&deploy("prometheus.yml"));
    let jobs = prom["scrape_configs"].as_sequence().unwrap();
    let job = jobs
        .iter()
        .find(|j| j["job_name"].as_str() == Some("im-server"))
        .unwrap();
    assert_eq!(
        job["metrics_path"].as_str(),
        Some(defaults().metrics.path.as_str())
    );
    let port = format!(":{}", defaults().server.http_port);
    let targets = job["static_configs"][0]["targets"].as_sequence().unwrap();
    assert!(!targets.is_empty());
    for t in targets {
        assert!(scalar(t).ends_with(&port), "{t:?} is not on {port}");
    }
}
