//! Docker Compose rules (Compose Specification, file formats v2 and v3), one service at
//! a time.

use crate::Sink;
use crate::image::{self, Pin};
use crate::rules::{
    CAPABILITIES, ESCALATION, HEALTH, HOST_MOUNT, HOST_NAMESPACE, IMAGE_LATEST, IMAGE_TAG, LIMITS,
    LOW_UID, PRIVILEGED, RUN_AS_ROOT, SECCOMP, SECRET, TMPFS_FLAGS, WRITABLE_ROOT,
};
use crate::secrets;
use crate::yaml::{Node, Value};

/// A Compose file: a top-level `services` mapping of mappings.
pub(crate) fn is_compose(root: &Node) -> bool {
    root.get("services")
        .is_some_and(|s| s.is_map() && s.entries().iter().all(|(_, v)| v.is_map() || v.is_null()))
}

/// Host paths that hand the host to whoever mounts them (and everything under them).
pub(crate) const SENSITIVE: &[&str] = &["/", "/proc", "/sys", "/etc", "/root", "/var/run"];
const DOCKER_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock"];

/// Why mounting host path `p` is refused, if it is.
pub(crate) fn sensitive_host_path(p: &str) -> Option<String> {
    let trimmed = p.trim();
    let norm = if trimmed.len() > 1 {
        trimmed.trim_end_matches('/')
    } else {
        trimmed
    };
    if DOCKER_SOCKETS.contains(&norm) {
        return Some(format!("`{norm}` is the Docker socket: root on the host"));
    }
    if norm == "/" {
        return Some("`/` is the host's whole file system".into());
    }
    SENSITIVE
        .iter()
        .filter(|s| **s != "/")
        .find(|s| norm == **s || norm.starts_with(&format!("{s}/")))
        .map(|s| format!("`{norm}` exposes the host's `{s}`"))
}

fn cap_name(s: &str) -> String {
    let u = s.trim().to_ascii_uppercase();
    u.strip_prefix("CAP_").map(str::to_owned).unwrap_or(u)
}

fn strings(n: &Node) -> Vec<&Node> {
    match &n.value {
        Value::Seq(v) => v.iter().collect(),
        Value::Scalar(..) if !n.is_null() => vec![n],
        _ => Vec::new(),
    }
}

fn image_check(img: &Node, what: &str, sink: &mut Sink) {
    let Some(s) = img.as_str() else { return };
    match image::pin(s) {
        Pin::Latest => sink.push(
            &IMAGE_LATEST,
            img.pos,
            format!("{what} image `{s}` has no tag or uses `latest`"),
        ),
        Pin::Tag => sink.push(
            &IMAGE_TAG,
            img.pos,
            format!("{what} image `{s}` is pinned by tag only, not by digest"),
        ),
        Pin::Digest | Pin::Unknown => {}
    }
}

fn env_check(env: &Node, svc: &str, sink: &mut Sink) {
    match &env.value {
        Value::Map(_) => {
            for (k, v) in env.entries() {
                if let Some(d) = v.as_str().and_then(secrets::detect) {
                    sink.push(
                        &SECRET,
                        v.pos,
                        format!(
                            "service `{svc}`: environment `{}` holds a {} (`{}…`)",
                            k.as_str().unwrap_or(""),
                            d.kind,
                            d.shown
                        ),
                    );
                }
            }
        }
        Value::Seq(items) => {
            for it in items {
                let Some(s) = it.as_str() else { continue };
                let (k, v) = s.split_once('=').unwrap_or((s, ""));
                if let Some(d) = secrets::detect(v) {
                    sink.push(
                        &SECRET,
                        it.pos,
                        format!(
                            "service `{svc}`: environment `{k}` holds a {} (`{}…`)",
                            d.kind, d.shown
                        ),
                    );
                }
            }
        }
        Value::Scalar(..) => {}
    }
}

pub(crate) fn check(root: &Node, sink: &mut Sink) {
    let Some(services) = root.get("services") else {
        return;
    };
    for (key, svc) in services.entries() {
        let name = key.as_str().unwrap_or("");
        let at = key.pos;
        if let Some(img) = svc.get("image") {
            image_check(img, &format!("service `{name}`:"), sink);
        }
        // User.
        match svc.get("user") {
            None => sink.push(
                &RUN_AS_ROOT,
                at,
                format!("service `{name}` sets no `user:`: it runs as the image's user, root unless the image says otherwise"),
            ),
            Some(u) => {
                let s = u.as_str().unwrap_or("");
                let uid = s.split(':').next().unwrap_or("").trim();
                if uid == "root" || uid.parse::<u64>() == Ok(0) {
                    sink.push(&RUN_AS_ROOT, u.pos, format!("service `{name}` runs as `{s}` (root)"));
                } else if let Ok(n) = uid.parse::<u64>()
                    && n < 10_000
                {
                    sink.push(&LOW_UID, u.pos, format!("service `{name}` runs as UID {n}, below 10000"));
                }
            }
        }
        // Read-only root.
        match svc.entry("read_only") {
            Some((_, v)) if v.as_bool() == Some(true) => {}
            Some((k, _)) => sink.push(
                &WRITABLE_ROOT,
                k.pos,
                format!("service `{name}`: `read_only` is not true"),
            ),
            None => sink.push(
                &WRITABLE_ROOT,
                at,
                format!("service `{name}` has a writable root file system (no `read_only: true`)"),
            ),
        }
        // Capabilities.
        let drops_all = svc
            .get("cap_drop")
            .map(strings)
            .unwrap_or_default()
            .iter()
            .any(|c| c.as_str().is_some_and(|s| cap_name(s) == "ALL"));
        if !drops_all {
            sink.push(
                &CAPABILITIES,
                at,
                format!("service `{name}` does not drop all capabilities (`cap_drop: [ALL]`)"),
            );
        }
        for c in svc.get("cap_add").map(strings).unwrap_or_default() {
            let s = c.as_str().unwrap_or("");
            if cap_name(s) != "NET_BIND_SERVICE" {
                sink.push(
                    &CAPABILITIES,
                    c.pos,
                    format!("service `{name}` adds capability `{s}`"),
                );
            }
        }
        if let Some((k, v)) = svc.entry("privileged")
            && v.as_bool() == Some(true)
        {
            sink.push(
                &PRIVILEGED,
                k.pos,
                format!("service `{name}` is privileged"),
            );
        }
        // security_opt: no-new-privileges, seccomp.
        let opts = svc.get("security_opt").map(strings).unwrap_or_default();
        let nnp = opts.iter().any(|o| {
            let s = o
                .as_str()
                .unwrap_or("")
                .replace('=', ":")
                .to_ascii_lowercase();
            s == "no-new-privileges" || s == "no-new-privileges:true"
        });
        if !nnp {
            sink.push(
                &ESCALATION,
                at,
                format!("service `{name}` lacks `security_opt: [\"no-new-privileges:true\"]`"),
            );
        }
        for o in &opts {
            let s = o
                .as_str()
                .unwrap_or("")
                .replace('=', ":")
                .to_ascii_lowercase();
            if s == "seccomp:unconfined" {
                sink.push(
                    &SECCOMP,
                    o.pos,
                    format!("service `{name}` turns seccomp off"),
                );
            }
        }
        // tmpfs flags (short syntax; the long syntax cannot express them).
        for t in svc.get("tmpfs").map(strings).unwrap_or_default() {
            let s = t.as_str().unwrap_or("");
            let flags: Vec<&str> = s
                .split_once(':')
                .map(|(_, o)| o.split(',').map(str::trim).collect())
                .unwrap_or_default();
            let missing: Vec<&str> = ["noexec", "nosuid", "nodev"]
                .into_iter()
                .filter(|f| !flags.contains(f))
                .collect();
            if !missing.is_empty() {
                sink.push(
                    &TMPFS_FLAGS,
                    t.pos,
                    format!("service `{name}`: tmpfs `{s}` lacks {}", missing.join(",")),
                );
            }
        }
        // Limits.
        let limits = svc.path(&["deploy", "resources", "limits"]);
        let cpu = limits.and_then(|l| l.get("cpus")).is_some()
            || svc.get("cpus").is_some()
            || svc.get("cpu_quota").is_some();
        let mem = limits.and_then(|l| l.get("memory")).is_some() || svc.get("mem_limit").is_some();
        if !cpu || !mem {
            let what = match (cpu, mem) {
                (false, false) => "CPU and memory limits",
                (false, true) => "CPU limit",
                _ => "memory limit",
            };
            sink.push(&LIMITS, at, format!("service `{name}` has no {what}"));
        }
        // Health check.
        let health = svc.get("healthcheck").is_some_and(|h| {
            h.get("disable").and_then(Node::as_bool) != Some(true)
                && h.get("test")
                    .and_then(Node::as_seq)
                    .and_then(|t| t.first())
                    .is_none_or(|f| f.as_str() != Some("NONE"))
        });
        if !health {
            sink.push(&HEALTH, at, format!("service `{name}` has no healthcheck"));
        }
        // Host namespaces.
        for (key, what) in [("network_mode", "network"), ("pid", "PID"), ("ipc", "IPC")] {
            if let Some((k, v)) = svc.entry(key)
                && v.as_str() == Some("host")
            {
                sink.push(
                    &HOST_NAMESPACE,
                    k.pos,
                    format!("service `{name}` shares the host's {what} namespace"),
                );
            }
        }
        // Host mounts.
        for v in svc.get("volumes").map(strings).unwrap_or_default() {
            let src = match &v.value {
                Value::Scalar(s, _) => {
                    let src = s.split(':').next().unwrap_or("");
                    src.starts_with('/').then(|| src.to_owned())
                }
                Value::Map(_) => {
                    let bind = v
                        .get("type")
                        .and_then(Node::as_str)
                        .is_none_or(|t| t == "bind");
                    v.get("source")
                        .and_then(Node::as_str)
                        .filter(|s| bind && s.starts_with('/'))
                        .map(str::to_owned)
                }
                Value::Seq(_) => None,
            };
            if let Some(why) = src.as_deref().and_then(sensitive_host_path) {
                sink.push(
                    &HOST_MOUNT,
                    v.pos,
                    format!("service `{name}`: bind mount: {why}"),
                );
            }
        }
        if let Some(env) = svc.get("environment") {
            env_check(env, name, sink);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn host_paths() {
        assert!(sensitive_host_path("/").is_some());
        assert!(
            sensitive_host_path("/var/run/docker.sock")
                .unwrap()
                .contains("Docker socket")
        );
        assert!(sensitive_host_path("/proc/").is_some());
        assert!(sensitive_host_path("/etc/localtime").is_some());
        assert!(sensitive_host_path("/srv/data").is_none());
        assert!(sensitive_host_path("/etcetera").is_none());
    }
}
