//! Standard process metrics, named and typed as Prometheus client libraries export them
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
//! `process_max_fds`, `process_start_time_seconds`), read from `/proc` on each scrape.
//! Where `/proc` is unavailable the families are left out rather than reported as zero.

use rampart_http::metrics::header;

fn stat_fields() -> Option<Vec<String>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn field(fields: &[String], n: usize) -> Option<f64> {
    // `fields` starts at field 3 (state) of proc(5).
    fields.get(n.checked_sub(3)?)?.parse().ok()
}

fn boot_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn sample(out: &mut String, name: &str, kind: &str, help: &str, v: f64) {
    header(out, name, kind, help);
    out.push_str(name);
    out.push(' ');
    out.push_str(&format!("{v}"));
    out.push('\n');
}

/// Appends the process metric families.
pub fn encode(out: &mut String) {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    if let Some(f) = stat_fields() {
        if let (Some(u), Some(s)) = (field(&f, 14), field(&f, 15)) {
            sample(
                out,
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                (u + s) / ticks,
            );
        }
        if let Some(rss) = field(&f, 24) {
            sample(
                out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                rss * rustix::param::page_size() as f64,
            );
        }
        if let (Some(start), Some(btime)) = (field(&f, 22), boot_time()) {
            sample(
                out,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                btime + start / ticks,
            );
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        sample(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            dir.count() as f64,
        );
    }
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if let Some(max) = lim.current {
        sample(
            out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max as f64,
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn families_present_and_plausible() {
        let mut s = String::new();
        super::encode(&mut s);
        let value = |name: &str| -> f64 {
            s.lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .and_then(|l| l.split(' ').nth(1))
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0);
        assert!(value("process_cpu_seconds_total") >= 0.0);
    }
}
