//! `[observability]`: the operational log level, the access log, the metrics listener, the
//! request-ID header and tracing; the serde mirror, the runtime types and the validation.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::settings::{is_token, Ctx, DurationValue};

// ---- the file ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileObservability {
    pub log_level: Option<Spanned<String>>,
    #[serde(default)]
    pub access_log: FileAccessLog,
    #[serde(default)]
    pub metrics: FileMetrics,
    pub request_id_header: Option<Spanned<String>>,
    pub tracing: Option<FileTracing>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAccessLog {
    pub enabled: Option<bool>,
    pub format: Option<Spanned<String>>,
    pub destination: Option<Spanned<String>>,
    pub sample: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMetrics {
    pub listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTracing {
    pub enabled: Option<bool>,
    pub otlp_endpoint: Option<Spanned<String>>,
    pub sample_ratio: Option<Spanned<f64>>,
    pub service_name: Option<Spanned<String>>,
    pub queue_size: Option<Spanned<i64>>,
    pub batch_size: Option<Spanned<i64>>,
    pub flush_interval: Option<Spanned<DurationValue>>,
}

// ---- runtime types ----

/// Metrics, access log, request IDs and tracing (`[observability]`).
#[derive(Debug, Clone)]
pub struct ObservabilityConfig {
    /// Level (or `tracing` filter directives) of the operational logs; `RUST_LOG` wins.
    /// Read at startup.
    pub log_level: String,
    /// `None` when `access_log.enabled = false`.
    pub access_log: Option<AccessLogConfig>,
    /// Extra listener serving only `GET /metrics` (the admin API always serves it too).
    pub metrics_listen: Option<SocketAddr>,
    /// Header carrying the request ID (lower case), kept when the client sent a valid one.
    pub request_id_header: String,
    /// `None` when tracing is off.
    pub tracing: Option<TracingConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// One JSON object per line (default).
    Json,
    /// nginx's "combined" format, plus request time, upstream time and request ID.
    Combined,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDestination {
    Stdout,
    Stderr,
    /// Appended to; reopened on SIGUSR1 (for logrotate).
    File(std::path::PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogConfig {
    pub format: AccessLogFormat,
    pub destination: LogDestination,
    /// Share of requests logged, 0.0..=1.0.
    pub sample: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// OTLP/HTTP traces endpoint (JSON), e.g. `http://127.0.0.1:4318/v1/traces`.
    pub otlp_endpoint: String,
    /// Share of new traces sampled, 0.0..=1.0; a sampled parent (`traceparent` flag) is
    /// always followed.
    pub sample_ratio: f64,
    pub service_name: String,
    /// Spans waiting for export; past it they are dropped and counted.
    pub queue_size: usize,
    pub batch_size: usize,
    pub flush_interval: Duration,
}

// ---- validation ----

/// `[observability]`; every key has a default.
pub(crate) fn build(ctx: &mut Ctx, file: FileObservability) -> ObservabilityConfig {
    let log = &file.access_log;
    let format = match log.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
        None | Some((_, "json")) => AccessLogFormat::Json,
        Some((_, "combined")) => AccessLogFormat::Combined,
        Some((f, other)) => {
            ctx.error(
                f.span(),
                "observability.access_log.format",
                format!("unknown format \"{other}\": expected \"json\" or \"combined\""),
            );
            AccessLogFormat::Json
        }
    };
    let destination = match log.destination.as_ref().map(|d| d.get_ref().as_str()) {
        None | Some("stdout") => LogDestination::Stdout,
        Some("stderr") => LogDestination::Stderr,
        Some(path) => LogDestination::File(ctx.relative_path(path)),
    };
    let sample = ctx.ratio(&log.sample, "observability.access_log.sample", 1.0);
    let access_log = (log.enabled != Some(false)).then_some(AccessLogConfig {
        format,
        destination,
        sample,
    });

    let metrics_listen = file
        .metrics
        .listen
        .as_ref()
        .and_then(|addr| ctx.socket_addr(addr, "observability.metrics.listen"));

    let request_id_header = match &file.request_id_header {
        None => "x-request-id".to_owned(),
        Some(name) => {
            if !is_token(name.get_ref()) {
                ctx.error(
                    name.span(),
                    "observability.request_id_header",
                    "must be a header name (a token)",
                );
            }
            name.get_ref().to_ascii_lowercase()
        }
    };

    let tracing = file
        .tracing
        .as_ref()
        .filter(|t| t.enabled != Some(false))
        .map(|t| {
            let key = "observability.tracing";
            let otlp_endpoint = match &t.otlp_endpoint {
                Some(url) if url.get_ref().starts_with("http://") => url.get_ref().clone(),
                Some(url) => {
                    ctx.error(
                        url.span(),
                        format!("{key}.otlp_endpoint"),
                        "must be an http:// URL (OTLP over HTTP)",
                    );
                    String::new()
                }
                None => "http://127.0.0.1:4318/v1/traces".to_owned(),
            };
            let count = |ctx: &mut Ctx,
                         value: &Option<Spanned<i64>>,
                         name: &str,
                         default: usize| match value {
                None => default,
                Some(v) => ctx
                    .count(v, &format!("{key}.{name}"), 1, 1_000_000)
                    .unwrap_or(default),
            };
            TracingConfig {
                otlp_endpoint,
                sample_ratio: ctx.ratio(&t.sample_ratio, &format!("{key}.sample_ratio"), 0.01),
                service_name: t
                    .service_name
                    .as_ref()
                    .map_or_else(|| "strait".to_owned(), |s| s.get_ref().clone()),
                queue_size: count(ctx, &t.queue_size, "queue_size", 4096),
                batch_size: count(ctx, &t.batch_size, "batch_size", 512),
                flush_interval: ctx.duration(
                    &t.flush_interval,
                    &format!("{key}.flush_interval"),
                    Duration::from_secs(1),
                ),
            }
        });
    let log_level = match &file.log_level {
        None => "info".to_owned(),
        Some(level) => {
            let text = level.get_ref();
            let is_level =
                ["error", "warn", "info", "debug", "trace", "off"].contains(&text.as_str());
            // Anything else must be filter directives (`target=level`, comma-separated).
            if !is_level
                && (!text.contains('=') || tracing_subscriber::EnvFilter::try_new(text).is_err())
            {
                ctx.error(
                    level.span(),
                    "observability.log_level",
                    format!("invalid level \"{}\": expected error, warn, info, debug or trace (or filter directives)", level.get_ref()),
                );
            }
            level.get_ref().clone()
        }
    };
    ObservabilityConfig {
        log_level,
        access_log,
        metrics_listen,
        request_id_header,
        tracing,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    use crate::config::load_errors as errors;

    #[test]
    fn observability_keys() {
        let base = "[server]\nlisten = [\"127.0.0.1:1\"]\n[observability]\n";
        let cases: &[(&str, &[&str])] = &[
            ("log_level = \"debug\"\n", &[]),
            ("log_level = \"strait=debug,warn\"\n", &[]),
            ("log_level = \"loud\"\n", &["t.toml:4:13: observability.log_level: invalid level \"loud\": expected error, warn, info, debug or trace (or filter directives)"]),
            ("request_id_header = \"X Id\"\n", &["t.toml:4:21: observability.request_id_header: must be a header name (a token)"]),
            ("[observability.access_log]\nformat = \"xml\"\n", &["t.toml:5:10: observability.access_log.format: unknown format \"xml\": expected \"json\" or \"combined\""]),
            ("[observability.access_log]\nsample = 1.5\n", &["t.toml:5:10: observability.access_log.sample: 1.5 is out of range: must be 0.0..=1.0"]),
            ("[observability.tracing]\notlp_endpoint = \"https://c:4318\"\n", &["t.toml:5:17: observability.tracing.otlp_endpoint: must be an http:// URL (OTLP over HTTP)"]),
        ];
        for (extra, want) in cases {
            assert_eq!(errors(&format!("{base}{extra}")), *want, "{extra}");
        }
        let config = load_str(base, "t.toml").unwrap();
        assert_eq!(config.observability.log_level, "info");
        assert_eq!(config.observability.request_id_header, "x-request-id");
        assert!(
            config.observability.access_log.is_some() && config.observability.tracing.is_none()
        );
    }
}
