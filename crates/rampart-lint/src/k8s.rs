//! Kubernetes rules: pod specs of Pods, Deployments, StatefulSets, DaemonSets,
//! ReplicaSets, Jobs and CronJobs (`List` items included), and NetworkPolicy presence
//! per namespace across all inputs of a run.

use std::collections::BTreeMap;

use crate::compose::sensitive_host_path;
use crate::image::{self, Pin};
use crate::rules::{
    CAPABILITIES, ESCALATION, HEALTH, HOST_MOUNT, HOST_NAMESPACE, IMAGE_LATEST, IMAGE_TAG, LIMITS,
    LOW_UID, NETWORK_POLICY, PRIVILEGED, RUN_AS_ROOT, SECCOMP, SECRET, WRITABLE_ROOT,
};
use crate::secrets;
use crate::yaml::{Node, Pos};
use crate::{Finding, NsFact, Sink};

/// A Kubernetes object: a mapping with `apiVersion` and `kind`.
pub(crate) fn is_manifest(root: &Node) -> bool {
    root.get("apiVersion").and_then(Node::as_str).is_some()
        && root.get("kind").and_then(Node::as_str).is_some()
}

/// Deepest `List` nesting followed.
const MAX_LIST_DEPTH: usize = 8;

pub(crate) fn check(root: &Node, file: &str, sink: &mut Sink, facts: &mut Vec<NsFact>) {
    check_inner(root, file, sink, facts, 0);
}

fn check_inner(root: &Node, file: &str, sink: &mut Sink, facts: &mut Vec<NsFact>, depth: usize) {
    if !is_manifest(root) {
        return;
    }
    let kind = root.get("kind").and_then(Node::as_str).unwrap_or("");
    let namespace = root
        .path(&["metadata", "namespace"])
        .and_then(Node::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_owned();
    let name = root
        .path(&["metadata", "name"])
        .and_then(Node::as_str)
        .unwrap_or("")
        .to_owned();
    let pod = match kind {
        "List" => {
            if depth < MAX_LIST_DEPTH {
                for item in root.get("items").and_then(Node::as_seq).unwrap_or_default() {
                    check_inner(item, file, sink, facts, depth + 1);
                }
            }
            return;
        }
        "NetworkPolicy" => {
            facts.push(NsFact {
                namespace,
                file: file.to_owned(),
                pos: root.pos,
                is_policy: true,
            });
            return;
        }
        "Pod" => root.get("spec"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            root.path(&["spec", "template", "spec"])
        }
        "CronJob" => root.path(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    };
    let Some(pod) = pod else { return };
    facts.push(NsFact {
        namespace,
        file: file.to_owned(),
        pos: root.pos,
        is_policy: false,
    });
    let needs_probe = matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet");
    check_pod(pod, &format!("{kind} `{name}`"), needs_probe, sink);
}

fn check_pod(pod: &Node, what: &str, needs_probe: bool, sink: &mut Sink) {
    for (key, ns) in [
        ("hostNetwork", "network"),
        ("hostPID", "PID"),
        ("hostIPC", "IPC"),
    ] {
        if let Some((k, v)) = pod.entry(key)
            && v.as_bool() == Some(true)
        {
            sink.push(
                &HOST_NAMESPACE,
                k.pos,
                format!("{what} shares the host's {ns} namespace (`{key}: true`)"),
            );
        }
    }
    for vol in pod
        .get("volumes")
        .and_then(Node::as_seq)
        .unwrap_or_default()
    {
        if let Some(p) = vol.path(&["hostPath", "path"])
            && let Some(why) = p.as_str().and_then(sensitive_host_path)
        {
            let vname = vol.get("name").and_then(Node::as_str).unwrap_or("");
            sink.push(
                &HOST_MOUNT,
                p.pos,
                format!("{what}: hostPath volume `{vname}`: {why}"),
            );
        }
    }
    let psc = pod.get("securityContext");
    let pod_limits = pod.path(&["resources", "limits"]);
    let groups = [("containers", false), ("initContainers", true)];
    for (group, init) in groups {
        for c in pod.get(group).and_then(Node::as_seq).unwrap_or_default() {
            let cname = c.get("name").and_then(Node::as_str).unwrap_or("");
            let who = format!(
                "{what}: {} `{cname}`",
                if init { "init container" } else { "container" }
            );
            check_container(c, psc, pod_limits, &who, needs_probe && !init, sink);
        }
    }
}

/// The setting at `key` of the container's securityContext, else the pod's.
fn effective<'a>(csc: Option<&'a Node>, psc: Option<&'a Node>, key: &str) -> Option<&'a Node> {
    csc.and_then(|s| s.get(key))
        .or_else(|| psc.and_then(|s| s.get(key)))
}

fn check_container(
    c: &Node,
    psc: Option<&Node>,
    pod_limits: Option<&Node>,
    who: &str,
    needs_probe: bool,
    sink: &mut Sink,
) {
    let at = c.pos;
    let csc = c.get("securityContext");
    // Non-root.
    let user = effective(csc, psc, "runAsUser");
    let non_root = effective(csc, psc, "runAsNonRoot");
    match user.and_then(Node::as_i64) {
        Some(0) => {
            let p = user.map_or(at, |u| u.pos);
            sink.push(
                &RUN_AS_ROOT,
                p,
                format!("{who} runs as UID 0 (`runAsUser: 0`)"),
            );
        }
        Some(n) if n > 0 => {
            if n < 10_000 {
                let p = user.map_or(at, |u| u.pos);
                sink.push(&LOW_UID, p, format!("{who} runs as UID {n}, below 10000"));
            }
        }
        _ => {
            if non_root.and_then(Node::as_bool) != Some(true) {
                sink.push(
                    &RUN_AS_ROOT,
                    at,
                    format!(
                        "{who} may run as root: no `runAsNonRoot: true` and no non-zero `runAsUser`"
                    ),
                );
            }
        }
    }
    // Read-only root file system.
    match csc.and_then(|s| s.entry("readOnlyRootFilesystem")) {
        Some((_, v)) if v.as_bool() == Some(true) => {}
        Some((k, _)) => sink.push(
            &WRITABLE_ROOT,
            k.pos,
            format!("{who}: `readOnlyRootFilesystem` is not true"),
        ),
        None => sink.push(
            &WRITABLE_ROOT,
            at,
            format!("{who} has a writable root file system (no `readOnlyRootFilesystem: true`)"),
        ),
    }
    // Capabilities.
    let caps = csc.and_then(|s| s.get("capabilities"));
    let drops_all = caps
        .and_then(|c| c.get("drop"))
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .any(|d| d.as_str().is_some_and(|s| s.eq_ignore_ascii_case("ALL")));
    if !drops_all {
        sink.push(
            &CAPABILITIES,
            at,
            format!("{who} does not drop all capabilities (`capabilities.drop: [ALL]`)"),
        );
    }
    for a in caps
        .and_then(|c| c.get("add"))
        .and_then(Node::as_seq)
        .unwrap_or_default()
    {
        let s = a.as_str().unwrap_or("");
        let n = s.trim().to_ascii_uppercase();
        if n.strip_prefix("CAP_").unwrap_or(&n) != "NET_BIND_SERVICE" {
            sink.push(&CAPABILITIES, a.pos, format!("{who} adds capability `{s}`"));
        }
    }
    if let Some((k, v)) = csc.and_then(|s| s.entry("privileged"))
        && v.as_bool() == Some(true)
    {
        sink.push(&PRIVILEGED, k.pos, format!("{who} is privileged"));
    }
    match csc.and_then(|s| s.entry("allowPrivilegeEscalation")) {
        Some((_, v)) if v.as_bool() == Some(false) => {}
        Some((k, _)) => sink.push(
            &ESCALATION,
            k.pos,
            format!("{who} allows privilege escalation"),
        ),
        None => sink.push(
            &ESCALATION,
            at,
            format!("{who} lacks `allowPrivilegeEscalation: false`"),
        ),
    }
    // seccomp.
    let sc_type = effective(csc, psc, "seccompProfile").and_then(|p| p.get("type"));
    match sc_type.and_then(Node::as_str) {
        Some("RuntimeDefault" | "Localhost") => {}
        Some(t) => {
            let p = sc_type.map_or(at, |n| n.pos);
            sink.push(
                &SECCOMP,
                p,
                format!("{who} runs with seccomp profile `{t}`"),
            );
        }
        None => sink.push(
            &SECCOMP,
            at,
            format!("{who} has no seccomp profile (`seccompProfile.type: RuntimeDefault`)"),
        ),
    }
    // Limits: the container's own, else the pod-level ones.
    let limits = c.path(&["resources", "limits"]);
    let has = |k: &str| {
        limits.and_then(|l| l.get(k)).is_some() || pod_limits.and_then(|l| l.get(k)).is_some()
    };
    let (cpu, mem) = (has("cpu"), has("memory"));
    if !cpu || !mem {
        let missing = match (cpu, mem) {
            (false, false) => "CPU and memory limits",
            (false, true) => "CPU limit",
            _ => "memory limit",
        };
        sink.push(&LIMITS, at, format!("{who} has no {missing}"));
    }
    if needs_probe && c.get("livenessProbe").is_none() && c.get("readinessProbe").is_none() {
        sink.push(
            &HEALTH,
            at,
            format!("{who} has no livenessProbe or readinessProbe"),
        );
    }
    if let Some(img) = c.get("image")
        && let Some(s) = img.as_str()
    {
        match image::pin(s) {
            Pin::Latest => sink.push(
                &IMAGE_LATEST,
                img.pos,
                format!("{who}: image `{s}` has no tag or uses `latest`"),
            ),
            Pin::Tag => sink.push(
                &IMAGE_TAG,
                img.pos,
                format!("{who}: image `{s}` is pinned by tag only, not by digest"),
            ),
            Pin::Digest | Pin::Unknown => {}
        }
    }
    for e in c.get("env").and_then(Node::as_seq).unwrap_or_default() {
        if let Some(v) = e.get("value")
            && let Some(d) = v.as_str().and_then(secrets::detect)
        {
            let ename = e.get("name").and_then(Node::as_str).unwrap_or("");
            sink.push(
                &SECRET,
                v.pos,
                format!(
                    "{who}: env `{ename}` holds a {} (`{}…`); use `secretKeyRef`",
                    d.kind, d.shown
                ),
            );
        }
    }
}

/// RP016: every namespace with workloads needs a NetworkPolicy among the run's inputs.
/// Reported once per namespace, at its first workload.
pub(crate) fn network_policies(facts: &[NsFact], out: &mut Vec<Finding>) {
    let mut first: BTreeMap<&str, &NsFact> = BTreeMap::new();
    for f in facts.iter().filter(|f| !f.is_policy) {
        first.entry(f.namespace.as_str()).or_insert(f);
    }
    let with_policy: std::collections::BTreeSet<&str> = facts
        .iter()
        .filter(|f| f.is_policy)
        .map(|f| f.namespace.as_str())
        .collect();
    for (ns, f) in first {
        if with_policy.contains(ns) {
            continue;
        }
        let mut sink = Sink::new(&f.file);
        sink.push(
            &NETWORK_POLICY,
            Pos {
                line: f.pos.line,
                col: f.pos.col,
            },
            format!("namespace `{ns}` has workloads but no NetworkPolicy among the linted inputs"),
        );
        out.extend(sink.findings);
    }
}
