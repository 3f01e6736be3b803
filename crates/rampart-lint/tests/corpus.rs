//! The linter on real manifests from public projects (`../shared/corpus/lint`, read in
//! place: sources and licences in its SOURCES.md; nothing is copied into this
//! repository). Each expectation is the complete list of `(rule, line)` findings for
//! the file linted alone, checked by hand against the file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/lint")
        .join(rel)
}

fn findings(paths: &[&str]) -> Vec<(&'static str, u32)> {
    let paths: Vec<PathBuf> = paths.iter().map(|p| corpus(p)).collect();
    let r = rampart_lint::lint_paths(&paths);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    r.findings.iter().map(|f| (f.rule.id, f.line)).collect()
}

fn expect(path: &str, want: &[(&str, u32)]) {
    let got = findings(&[path]);
    assert_eq!(got, want, "{path}");
}

#[rustfmt::skip]
#[test]
fn dockerfiles() {
    // Ubuntu base, local ADD only, single stage, no USER.
    expect(
        "docker/nginx-proxy-2014/Dockerfile",
        &[("RP001", 1), ("RP014", 1), ("RP017", 1), ("RP019", 1)],
    );
    // ADD of a remote URL at line 17.
    expect(
        "docker/nginx-proxy-2017/Dockerfile",
        &[("RP001", 1), ("RP014", 1), ("RP017", 1), ("RP019", 1), ("RP018", 17)],
    );
    // Multi-stage: `FROM gobuilder as …` stage references are not images; the final
    // stage (line 42) is nginx without USER; remote ADD with a variable at line 29.
    expect(
        "docker/nginx-proxy-2021/Dockerfile",
        &[("RP014", 6), ("RP018", 29), ("RP001", 42), ("RP014", 42), ("RP019", 42)],
    );
    // Digest-pinned builder (nothing), untagged distroless final base without USER.
    expect(
        "docker/microservices-demo-frontend/Dockerfile",
        &[("RP001", 32), ("RP013", 32)],
    );
    // `FROM base` twice: the final stage inherits the digest-pinned alpine base.
    expect("docker/microservices-demo-emailservice/Dockerfile", &[("RP001", 33)]);
    // Heredoc RUNs; `FROM builder as dev-envs` is the final stage, no USER anywhere.
    expect(
        "docker/awesome-compose-flask/Dockerfile",
        &[("RP014", 2), ("RP001", 15)],
    );
    // Distroless final stage with USER 65534: only the tags.
    expect(
        "docker/metrics-server/Dockerfile",
        &[("RP014", 4), ("RP014", 20)],
    );
}

#[rustfmt::skip]
#[test]
fn compose_files() {
    // Compose v2: untagged image, build-only service, the Docker socket mounted.
    expect(
        "compose/kafka-docker/docker-compose.yml",
        &[
            ("RP001", 3), ("RP003", 3), ("RP004", 3), ("RP006", 3), ("RP009", 3), ("RP010", 3),
            ("RP013", 4),
            ("RP001", 9), ("RP003", 9), ("RP004", 9), ("RP006", 9), ("RP009", 9), ("RP010", 9),
            ("RP012", 18),
        ],
    );
    // cap_drop ALL present (no RP004 at the services) but capabilities added back;
    // network_mode host; `latest`.
    expect(
        "compose/searxng-docker/docker-compose.yaml",
        &[
            ("RP001", 4), ("RP003", 4), ("RP006", 4), ("RP009", 4), ("RP010", 4), ("RP014", 6),
            ("RP011", 7),
            ("RP001", 26), ("RP003", 26), ("RP006", 26), ("RP009", 26), ("RP010", 26),
            ("RP014", 28), ("RP004", 38), ("RP004", 39), ("RP004", 40),
            ("RP001", 47), ("RP003", 47), ("RP006", 47), ("RP009", 47), ("RP010", 47),
            ("RP013", 49), ("RP004", 64), ("RP004", 65), ("RP004", 66),
        ],
    );
    // node-exporter mounting /proc, /sys, /; privileged cAdvisor mounting / and /var/run.
    expect(
        "compose/dockprom/docker-compose.exporters.yml",
        &[
            ("RP001", 3), ("RP003", 3), ("RP004", 3), ("RP006", 3), ("RP009", 3), ("RP010", 3),
            ("RP014", 4), ("RP012", 7), ("RP012", 8), ("RP012", 9), ("RP011", 16),
            ("RP001", 20), ("RP003", 20), ("RP004", 20), ("RP006", 20), ("RP009", 20),
            ("RP010", 20), ("RP014", 21), ("RP005", 23), ("RP012", 27), ("RP012", 28),
            ("RP012", 29), ("RP011", 33),
        ],
    );
    // `latest`, no tag, host /etc bind mounts, NET_ADMIN.
    expect(
        "compose/awesome-compose-pihole/compose.yaml",
        &[
            ("RP001", 3), ("RP003", 3), ("RP004", 3), ("RP006", 3), ("RP009", 3), ("RP010", 3),
            ("RP013", 4),
            ("RP001", 18), ("RP003", 18), ("RP004", 18), ("RP006", 18), ("RP009", 18),
            ("RP010", 18), ("RP013", 20), ("RP012", 41), ("RP012", 42), ("RP004", 44),
        ],
    );
}

#[rustfmt::skip]
#[test]
fn kubernetes_manifests() {
    // Untagged image in a CronJob (no probe required); no NetworkPolicy in `default`.
    expect(
        "k8s/website/cronjob.yaml",
        &[
            ("RP016", 1), ("RP001", 12), ("RP003", 12), ("RP004", 12), ("RP006", 12),
            ("RP007", 12), ("RP009", 12), ("RP013", 13),
        ],
    );
    // `alpine:latest` in a container and a sidecar init container (no probe rule for it).
    expect(
        "k8s/website/deployment-sidecar.yaml",
        &[
            ("RP016", 1), ("RP001", 18), ("RP003", 18), ("RP004", 18), ("RP006", 18),
            ("RP007", 18), ("RP009", 18), ("RP010", 18), ("RP013", 19), ("RP001", 25),
            ("RP003", 25), ("RP004", 25), ("RP006", 25), ("RP007", 25), ("RP009", 25),
            ("RP013", 26),
        ],
    );
    // Pod-level runAsUser 1000 covers the container (RP002 at the pod-level key).
    expect(
        "k8s/website/security-context.yaml",
        &[
            ("RP016", 1), ("RP002", 7), ("RP003", 13), ("RP004", 13), ("RP007", 13),
            ("RP009", 13), ("RP014", 14),
        ],
    );
    // The StatefulSet is the second document (line 15); the Service is not a workload.
    expect(
        "k8s/website/web.yaml",
        &[
            ("RP016", 15), ("RP001", 31), ("RP003", 31), ("RP004", 31), ("RP006", 31),
            ("RP007", 31), ("RP009", 31), ("RP010", 31), ("RP014", 32),
        ],
    );
    // Flow-style YAML; a NetworkPolicy only.
    expect("k8s/website/network-policy-default-deny-all.yaml", &[]);
    // hostNetwork, hostPID, hostPath `/sys` and `/`, SYS_TIME added.
    expect(
        "k8s/kube-prometheus/nodeExporter-daemonset.yaml",
        &[
            ("RP016", 1), ("RP007", 29), ("RP010", 29), ("RP014", 41), ("RP004", 54),
            ("RP010", 67), ("RP014", 76), ("RP011", 100), ("RP011", 101), ("RP012", 114),
            ("RP012", 117),
        ],
    );
    // Hardened except for missing limits, a tag and UID 1000.
    expect(
        "k8s/metrics-server/deployment.yaml",
        &[("RP016", 2), ("RP009", 20), ("RP014", 21), ("RP002", 55)],
    );
    expect(
        "k8s/microservices-demo/frontend.yaml",
        &[("RP016", 15), ("RP002", 37), ("RP007", 39), ("RP013", 47)],
    );
}

#[test]
fn network_policy_is_found_across_files() {
    let alone = findings(&["k8s/kube-prometheus/kubeStateMetrics-deployment.yaml"]);
    assert!(alone.contains(&("RP016", 1)), "{alone:?}");
    let with_policy = findings(&[
        "k8s/kube-prometheus/kubeStateMetrics-deployment.yaml",
        "k8s/kube-prometheus/kubeStateMetrics-networkPolicy.yaml",
    ]);
    assert!(
        with_policy.iter().all(|(r, _)| *r != "RP016"),
        "{with_policy:?}"
    );
    // Hardened: only probes and tags remain.
    let rules: Vec<&str> = with_policy.iter().map(|(r, _)| *r).collect();
    assert!(
        rules.iter().all(|r| *r == "RP010" || *r == "RP014"),
        "{rules:?}"
    );
}

#[test]
fn digest_pinned_release_has_no_image_findings() {
    let got = findings(&["k8s/ingress-nginx-v1.15.1/deploy.yaml"]);
    assert!(
        got.iter().all(|(r, _)| *r != "RP013" && *r != "RP014"),
        "{got:?}"
    );
    // …but its root file system is writable (`readOnlyRootFilesystem: false`).
    assert!(got.iter().any(|(r, _)| *r == "RP003"));
    // v1.5.2 allows privilege escalation.
    let old = findings(&["k8s/ingress-nginx-v1.5.2/deploy.yaml"]);
    assert!(old.iter().any(|(r, _)| *r == "RP006"));
}

#[test]
fn whole_corpus_walk() {
    let r = rampart_lint::lint_paths(&[corpus("")]);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    // 27 fixtures; SOURCES.md is skipped as a file of no known kind.
    assert_eq!(r.files, 27);
    let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &r.findings {
        *by_rule.entry(f.rule.id).or_default() += 1;
    }
    // Every rule that the corpus can trigger fires; RP008 (tmpfs flags), RP015
    // (secrets) and RP020 (suppressions) are covered by the cases in tests/cases.rs.
    for id in [
        "RP001", "RP002", "RP003", "RP004", "RP005", "RP006", "RP007", "RP009", "RP010", "RP011",
        "RP012", "RP013", "RP014", "RP016", "RP017", "RP018", "RP019",
    ] {
        assert!(by_rule.contains_key(id), "{id} never fired: {by_rule:?}");
    }
    assert_eq!(r.exit_code(rampart_lint::Severity::Error), 1);
}
