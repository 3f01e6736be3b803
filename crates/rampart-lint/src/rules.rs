//! The rule table: stable ids, severities, titles, rationales and fixes. Ids are never
//! reused or renumbered; a retired rule keeps its id out of use.

use std::fmt;

/// A finding's severity, named as SARIF levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Note,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "note" => Some(Severity::Note),
            "warning" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: &'static str,
    /// Short kebab-case name (SARIF `name`).
    pub name: &'static str,
    pub severity: Severity,
    pub title: &'static str,
    pub rationale: &'static str,
    pub fix: &'static str,
}

macro_rules! rules {
    ($($c:ident = $id:literal, $name:literal, $sev:ident, $title:literal, $why:literal, $fix:literal;)*) => {
        $(pub const $c: Rule = Rule {
            id: $id, name: $name, severity: Severity::$sev, title: $title, rationale: $why, fix: $fix,
        };)*
        /// Every rule, in id order.
        pub const ALL: &[Rule] = &[$($c),*];
    };
}

rules! {
    RUN_AS_ROOT = "RP001", "run-as-non-root", Error,
        "Container may run as root",
        "A process running as UID 0 inside a container is root on the host's kernel: one escape, one writable host mount or one kernel bug away from owning the node. Kubernetes needs `runAsNonRoot: true` or a non-zero `runAsUser` (container or pod level); Compose needs a non-root `user:`; a Dockerfile needs a `USER` other than root in its final stage.",
        "Set `securityContext.runAsNonRoot: true` and `runAsUser: 10001` (Kubernetes), `user: \"10001:10001\"` (Compose), or `USER 10001:10001` at the end of the final stage (Dockerfile).";
    LOW_UID = "RP002", "high-uid", Warning,
        "UID below 10000",
        "UIDs below 10000 collide with system and host users (e.g. 999 is often `docker` or `systemd-coredump` on the host); a container escape then lands as a user that owns host files.",
        "Run as a dedicated UID of 10000 or above, e.g. 10001 or 65532.";
    WRITABLE_ROOT = "RP003", "read-only-root-filesystem", Error,
        "Root file system is writable",
        "A writable root file system lets an intruder drop tools, alter binaries and persist. Read-only roots make the image the only code that runs; writable paths become explicit volumes or tmpfs.",
        "Set `securityContext.readOnlyRootFilesystem: true` (Kubernetes) or `read_only: true` (Compose) and mount tmpfs/emptyDir where the process must write.";
    CAPABILITIES = "RP004", "drop-all-capabilities", Error,
        "Capabilities not dropped",
        "Default container capabilities include CHOWN, DAC_OVERRIDE, SETUID, NET_RAW and more; each widens what a compromised process can do. Drop all; only NET_BIND_SERVICE may be added back (to bind a port below 1024).",
        "Set `capabilities: {drop: [ALL]}` (Kubernetes) or `cap_drop: [ALL]` (Compose); add back at most NET_BIND_SERVICE.";
    PRIVILEGED = "RP005", "no-privileged", Error,
        "Privileged container",
        "A privileged container has every capability and every host device: it is root on the host.",
        "Remove `privileged: true`; grant the single capability or device actually needed.";
    ESCALATION = "RP006", "no-new-privileges", Error,
        "Privilege escalation allowed",
        "Without no-new-privileges, setuid binaries and file capabilities inside the image can raise a process above the user it started as.",
        "Set `allowPrivilegeEscalation: false` (Kubernetes) or `security_opt: [\"no-new-privileges:true\"]` (Compose).";
    SECCOMP = "RP007", "seccomp-profile", Warning,
        "No seccomp profile",
        "seccomp removes hundreds of rarely needed system calls, the usual path of kernel exploits. Kubernetes runs pods Unconfined unless a profile is set; `Unconfined` anywhere switches it off.",
        "Set `securityContext.seccompProfile.type: RuntimeDefault` (pod or container); in Compose do not use `seccomp:unconfined`.";
    TMPFS_FLAGS = "RP008", "tmpfs-noexec", Warning,
        "tmpfs without noexec,nosuid,nodev",
        "A writable tmpfs without `noexec` is where a dropped payload is executed from; `nosuid` and `nodev` stop setuid binaries and device nodes there.",
        "Mount tmpfs with `noexec,nosuid,nodev`, e.g. `tmpfs: [\"/tmp:rw,noexec,nosuid,nodev,size=64m\"]`.";
    LIMITS = "RP009", "resource-limits", Warning,
        "No CPU or memory limit",
        "Without limits one container can starve its neighbours and the node (a denial of service by load or by a leak); memory limits also bound what an attacker can allocate.",
        "Set `resources.limits.cpu` and `resources.limits.memory` (Kubernetes, container or pod level) or `deploy.resources.limits` / `cpus` and `mem_limit` (Compose).";
    HEALTH = "RP010", "health-check", Warning,
        "No health check",
        "Without liveness or readiness probes a hung or half-started process keeps receiving traffic and is never restarted.",
        "Add a `livenessProbe` or `readinessProbe` (Kubernetes Deployment, StatefulSet, DaemonSet) or a `healthcheck` (Compose).";
    HOST_NAMESPACE = "RP011", "no-host-namespaces", Error,
        "Host namespace shared",
        "hostNetwork, hostPID and hostIPC (Compose `network_mode: host`, `pid: host`, `ipc: host`) give the container the host's network stack, processes or shared memory: it can sniff, signal and bind as the host.",
        "Remove `hostNetwork`/`hostPID`/`hostIPC` (or the `host` modes) and publish ports instead.";
    HOST_MOUNT = "RP012", "no-sensitive-host-mounts", Error,
        "Sensitive host path mounted",
        "Mounting `/`, `/proc`, `/sys`, `/etc`, `/root`, `/var/run` or the Docker socket hands the container the host: the Docker socket alone is root on the machine.",
        "Remove the hostPath or bind mount; use a volume, a ConfigMap/Secret, or a narrowly scoped API.";
    IMAGE_LATEST = "RP013", "image-not-latest", Error,
        "Image without a tag or with `latest`",
        "An untagged or `latest` image changes under you: what runs is not what was reviewed, and a compromised upstream push reaches production on the next pull.",
        "Pin the image by digest (`name:tag@sha256:…`).";
    IMAGE_TAG = "RP014", "image-digest", Warning,
        "Image tag without a digest",
        "Tags are mutable: a registry (or whoever controls it) can point the same tag at other content. A digest names exactly the bytes that were reviewed.",
        "Append the digest: `name:tag@sha256:…` (e.g. `docker buildx imagetools inspect name:tag`).";
    SECRET = "RP015", "no-literal-secrets", Error,
        "Secret written as a literal value",
        "A credential in a manifest ends up in version control, CI logs, `docker inspect` and every copy of the file; it must be treated as leaked.",
        "Revoke the credential; reference it instead (`secretKeyRef`, `${VAR}`, Docker secrets, BuildKit `--mount=type=secret`).";
    NETWORK_POLICY = "RP016", "network-policy", Error,
        "Namespace without a NetworkPolicy",
        "Without a NetworkPolicy every pod in the namespace accepts traffic from, and sends traffic to, anything in the cluster: one compromised pod reaches them all.",
        "Add a NetworkPolicy (at least a default deny plus the flows the workload needs) to every namespace that runs workloads.";
    SINGLE_STAGE = "RP017", "multi-stage", Warning,
        "Single-stage Dockerfile",
        "A single stage ships compilers, package managers and build secrets in the runtime image, each one more tool for an intruder and more CVEs to patch.",
        "Build in one stage and `COPY --from=build` only the artefacts into a minimal final stage.";
    REMOTE_ADD = "RP018", "no-remote-add", Error,
        "ADD of a remote URL",
        "`ADD https://…` downloads at build time without any integrity check (and git sources likewise): the image contains whatever the server returned that day.",
        "Download with a pinned checksum (`ADD --checksum=sha256:…` or `curl` + `sha256sum -c`) or COPY a vendored file.";
    FAT_BASE = "RP019", "minimal-base", Warning,
        "Final stage is not on a minimal base",
        "Full distributions carry shells, package managers and hundreds of packages the service never uses: attack surface and CVE noise.",
        "Base the final stage on distroless, scratch, alpine, wolfi/chainguard or a `-slim` image.";
    BAD_SUPPRESSION = "RP020", "suppression-reason", Warning,
        "Suppression without a reason",
        "A suppression hides a finding from every later review; without a written reason nobody can tell whether it still holds. A suppression without `reason=\"…\"` suppresses nothing.",
        "Write `# rampart-lint: ignore RP004 reason=\"why this is acceptable here\"`.";
}

/// The rule with this id.
pub fn by_id(id: &str) -> Option<&'static Rule> {
    ALL.iter().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_ordered() {
        for (i, r) in ALL.iter().enumerate() {
            assert_eq!(r.id, format!("RP{:03}", i + 1));
            assert!(!r.rationale.is_empty() && !r.fix.is_empty() && !r.title.is_empty());
        }
    }
}
