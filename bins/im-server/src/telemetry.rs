//! Tracing set-up.
//!
//! [`subscriber`] is a pure function: a filter, a format and some sinks in,
//! a subscriber out, so tests can point it at a buffer. [`init`] builds the
//! sinks from [`LoggerConfig`] (stdout and/or a rotating file), installs the
//! subscriber globally and returns a [`Guard`] that flushes the file on drop.
//! [`init_for_tests`] installs a subscriber once per test process and prints
//! only when `TEST_LOG` is set.
//!
//! Handlers use `#[tracing::instrument(skip_all, fields(user, conn))]`;
//! message content and tokens are never logged.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Once;

use tracing::Subscriber;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{self, Rotation};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LogRotation, LoggerConfig};

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter '{filter}' (from {origin}): {reason}")]
    Filter {
        filter: String,
        /// `RUST_LOG` or `logger.level`.
        origin: &'static str,
        reason: String,
    },
    #[error("cannot open log file {}: {source}", path.display())]
    File { path: PathBuf, source: io::Error },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInitialized,
}

/// Keeps the background log-file writer alive; dropping it flushes
/// buffered lines. Hold it until the end of `main`.
#[must_use = "dropping the guard stops file logging"]
#[derive(Debug)]
pub struct Guard {
    _file: Option<WorkerGuard>,
}

/// One place log lines go to.
pub struct Sink {
    writer: BoxMakeWriter,
    ansi: bool,
}

impl Sink {
    /// A sink writing to `writer`, without ANSI colours.
    pub fn new<W>(writer: W) -> Self
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        Self {
            writer: BoxMakeWriter::new(writer),
            ansi: false,
        }
    }

    /// Colours for the console format (only for terminals).
    pub fn with_ansi(mut self, ansi: bool) -> Self {
        self.ansi = ansi;
        self
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("ansi", &self.ansi)
            .finish_non_exhaustive()
    }
}

type Base = Layered<EnvFilter, Registry>;

/// The filter: `rust_log` (the value of `RUST_LOG`) when set and not blank,
/// else `level` (`logger.level`).
pub fn env_filter(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    let (filter, origin) = match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        Some(env) => (env, "RUST_LOG"),
        None => (level.trim(), "logger.level"),
    };
    EnvFilter::builder()
        .parse(filter)
        .map_err(|e| TelemetryError::Filter {
            filter: filter.to_owned(),
            origin,
            reason: e.to_string(),
        })
}

/// Builds a subscriber that filters with `filter` and writes every event to
/// each of `sinks` in `format`. Installs nothing.
pub fn subscriber(
    filter: EnvFilter,
    format: LogFormat,
    sinks: Vec<Sink>,
) -> impl Subscriber + Send + Sync {
    let layers: Vec<Box<dyn Layer<Base> + Send + Sync>> = sinks
        .into_iter()
        .map(|sink| {
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(sink.writer)
                .with_ansi(sink.ansi);
            match format {
                LogFormat::Console => layer.boxed(),
                LogFormat::Json => layer
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .boxed(),
            }
        })
        .collect();
    Registry::default().with(filter).with(layers)
}

/// Sets up logging for the server from `logger` (and `RUST_LOG`): stdout
/// when `logger.console`, a rotating file when `logger.output`. Fails if a
/// subscriber is already installed.
pub fn init(logger: &LoggerConfig) -> Result<Guard, TelemetryError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = env_filter(&logger.level, rust_log.as_deref())?;
    let mut sinks = Vec::new();
    if logger.console {
        let ansi =
            logger.format == LogFormat::Console && io::IsTerminal::is_terminal(&io::stdout());
        sinks.push(Sink::new(io::stdout).with_ansi(ansi));
    }
    let mut file_guard = None;
    if let Some(path) = &logger.output {
        let appender = rolling_file(path, logger.rotation, logger.max_files)?;
        let (writer, guard) = tracing_appender::non_blocking(appender);
        sinks.push(Sink::new(writer));
        file_guard = Some(guard);
    }
    subscriber(filter, logger.format, sinks)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInitialized)?;
    Ok(Guard { _file: file_guard })
}

/// A file appender for `path`: files `<name>.<date>` (or just `<name>` with
/// [`LogRotation::Never`]) in `path`'s directory, which is created if needed.
pub fn rolling_file(
    path: &Path,
    rotation: LogRotation,
    max_files: Option<usize>,
) -> Result<rolling::RollingFileAppender, TelemetryError> {
    let file_err = |source: io::Error| TelemetryError::File {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| file_err(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(file_err)?;
    let rotation = match rotation {
        LogRotation::Minutely => Rotation::MINUTELY,
        LogRotation::Hourly => Rotation::HOURLY,
        LogRotation::Daily => Rotation::DAILY,
        LogRotation::Never => Rotation::NEVER,
    };
    let mut builder = rolling::Builder::new()
        .rotation(rotation)
        .filename_prefix(name.to_string_lossy());
    if let Some(n) = max_files {
        builder = builder.max_log_files(n);
    }
    builder
        .build(&dir)
        .map_err(|e| file_err(io::Error::other(e.to_string())))
}

/// For tests: installs a subscriber once per process. With `TEST_LOG` set
/// (to anything but empty or `0`) events go to the test's captured stdout at `RUST_LOG` or
/// `debug`; otherwise they are discarded. Safe to call from every test.
pub fn init_for_tests() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let rust_log = std::env::var("RUST_LOG").ok();
        let Ok(filter) = env_filter("debug", rust_log.as_deref()) else {
            return;
        };
        let wanted = std::env::var("TEST_LOG").is_ok_and(|v| !v.is_empty() && v != "0");
        let sink = if wanted {
            Sink::new(tracing_subscriber::fmt::TestWriter::new())
        } else {
            Sink::new(io::sink)
        };
        // Another subscriber may already be installed by the test; keep it.
        let _ = subscriber(filter, LogFormat::Console, vec![sink]).try_init();
    });
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn capture(level: &str, format: LogFormat, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let writer = buf.clone();
        let sub = subscriber(
            env_filter(level, None).unwrap(),
            format,
            vec![Sink::new(move || writer.clone())],
        );
        tracing::subscriber::with_default(sub, f);
        buf.text()
    }

    #[test]
    fn console_format_respects_level() {
        let out = capture("info", LogFormat::Console, || {
            tracing::info!(port = 8080, "listening");
            tracing::debug!("hidden");
        });
        assert!(out.contains("listening"), "{out}");
        assert!(out.contains("port=8080"), "{out}");
        assert!(!out.contains("hidden"), "{out}");
        assert!(!out.contains('\u{1b}'), "no ANSI escapes: {out}");
    }

    #[test]
    fn json_format_is_one_object_per_line() {
        let out = capture("debug", LogFormat::Json, || {
            tracing::debug!(user = "alice", "authenticated");
        });
        let line = out.lines().next().unwrap();
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["message"], "authenticated");
        assert_eq!(v["user"], "alice");
        assert_eq!(v["level"], "DEBUG");
    }

    #[test]
    fn rust_log_overrides_level() {
        let f = env_filter("info", Some("warn")).unwrap();
        assert_eq!(f.to_string(), "warn");
        let f = env_filter("info", Some("  ")).unwrap();
        assert_eq!(f.to_string(), "info");
        let err = env_filter("info", Some("=[")).unwrap_err();
        assert!(err.to_string().contains("RUST_LOG"), "{err}");
    }

    #[test]
    fn rolling_file_writes_into_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("im.log");
        let appender = rolling_file(&path, LogRotation::Never, None).unwrap();
        let sub = subscriber(
            env_filter("info", None).unwrap(),
            LogFormat::Console,
            vec![Sink::new(Mutex::new(appender))],
        );
        tracing::subscriber::with_default(sub, || tracing::info!("to the file"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("to the file"), "{text}");
    }

    #[test]
    fn daily_rotation_names_files_by_date() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("im-server.log");
        let appender = rolling_file(&path, LogRotation::Daily, Some(3)).unwrap();
        let sub = subscriber(
            env_filter("info", None).unwrap(),
            LogFormat::Json,
            vec![Sink::new(Mutex::new(appender))],
        );
        tracing::subscriber::with_default(sub, || tracing::info!("rotated"));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("im-server.log."), "{names:?}");
    }

    #[test]
    fn test_helper_is_idempotent() {
        init_for_tests();
        init_for_tests();
        tracing::info!("only visible with TEST_LOG=1");
    }
}
