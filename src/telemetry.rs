//! Logging: a tracing subscriber set up once at startup from `[log]`.

use tracing_subscriber::EnvFilter;

/// A bare level applies to superx's own crates (others stay at `warn`); anything else is
/// taken as a tracing filter directive.
pub fn filter_directive(level: &str) -> String {
    match level.trim().to_ascii_lowercase().as_str() {
        l @ ("error" | "warn" | "info" | "debug" | "trace") => {
            format!("warn,superx={l},superx_raft={l},superx_cluster={l}")
        }
        "warning" => "warn".into(),
        _ => level.to_owned(),
    }
}

pub fn init(level: &str, format: &str) {
    let filter = EnvFilter::try_new(filter_directive(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
