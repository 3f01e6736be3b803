//! Small cases of our own, each with its exact expected findings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use rampart_lint::{Severity, lint_paths, lint_source};

fn ids(name: &str, text: &str) -> Vec<(&'static str, u32)> {
    let r = lint_source(name, text);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    r.findings.iter().map(|f| (f.rule.id, f.line)).collect()
}

const HARDENED_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: ok
  namespace: app
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: app
      image: registry.example/app:1.0@sha256:0000000000000000000000000000000000000000000000000000000000000000
      securityContext:
        readOnlyRootFilesystem: true
        allowPrivilegeEscalation: false
        capabilities:
          drop: [ALL]
          add: [NET_BIND_SERVICE]
      resources:
        limits: {cpu: 500m, memory: 128Mi}
      env:
        - name: TOKEN
          valueFrom:
            secretKeyRef: {name: s, key: token}
        - name: REF
          value: ${TOKEN}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny
  namespace: app
spec:
  podSelector: {}
"#;

#[test]
fn hardened_pod_is_clean() {
    assert_eq!(ids("pod.yaml", HARDENED_POD), []);
}

#[test]
fn kubernetes_violations_point_at_their_keys() {
    let text = HARDENED_POD
        .replace("runAsUser: 10001", "runAsUser: 0")
        .replace(
            "add: [NET_BIND_SERVICE]",
            "add: [NET_BIND_SERVICE, SYS_ADMIN]",
        )
        .replace("type: RuntimeDefault", "type: Unconfined")
        .replace("value: ${TOKEN}", "value: AKIAIOSFODNN7EXAMPLE")
        .replace("  containers:", "  hostPID: true\n  containers:");
    let r = lint_source("pod.yaml", &text);
    let got: Vec<_> = r.findings.iter().map(|f| (f.rule.id, f.line)).collect();
    assert_eq!(
        got,
        [
            ("RP001", 9),
            ("RP007", 11),
            ("RP011", 12),
            ("RP004", 21),
            ("RP015", 29)
        ]
    );
    let secret = r.findings.iter().find(|f| f.rule.id == "RP015").unwrap();
    assert!(secret.message.contains("AKIA…"), "{}", secret.message);
    assert!(!secret.message.contains("AKIAIOSF"), "{}", secret.message);
    assert_eq!(secret.column, 18);
}

#[test]
fn pod_level_limits_and_list_kind() {
    let text = r#"apiVersion: v1
kind: List
items:
  - apiVersion: batch/v1
    kind: Job
    metadata: {name: j}
    spec:
      template:
        spec:
          resources:
            limits: {cpu: "1", memory: 1Gi}
          securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
          initContainers:
            - name: init
              image: busybox:1.36
              securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, privileged: true}
          containers:
            - name: c
              image: busybox:1.36@sha256:00
              securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
"#;
    // No probe rule for Jobs; pod-level limits cover both containers.
    assert_eq!(
        ids("list.yaml", text),
        [("RP016", 4), ("RP014", 15), ("RP005", 16)]
    );
}

#[test]
fn compose_merge_keys_tmpfs_and_environment() {
    let text = r#"x-hardening: &hardening
  read_only: true
  user: "10001:10001"
  cap_drop: [ALL]
  security_opt: ["no-new-privileges:true"]
  deploy: {resources: {limits: {cpus: "0.5", memory: 256M}}}
  healthcheck: {test: ["CMD", "true"]}
services:
  ok:
    <<: *hardening
    image: redis:7@sha256:00
    tmpfs: ["/tmp:rw,noexec,nosuid,nodev,size=16m"]
    environment:
      - PASSWORD=${PASSWORD}
  bad:
    <<: *hardening
    user: "999"
    image: redis:7
    tmpfs:
      - /run:noexec
    security_opt: ["seccomp:unconfined"]
    pid: host
    environment:
      GH: ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
      - type: bind
        source: /etc
        target: /host-etc
"#;
    let got = ids("compose.yaml", text);
    assert_eq!(
        got,
        [
            ("RP006", 15),
            ("RP002", 17),
            ("RP014", 18),
            ("RP008", 20),
            ("RP007", 21),
            ("RP011", 22),
            ("RP015", 24),
            ("RP012", 26),
            ("RP012", 27),
        ]
    );
}

#[test]
fn dockerfile_cases() {
    let text = "ARG BASE=alpine:3.20\nFROM golang:1.23@sha256:00 AS build\nRUN go build\nFROM ${BASE}\nENV SLACK=xoxb-123456789012-abcdefghijkl\nADD --checksum=sha256:00 https://example.com/x.tgz /x\nADD https://example.com/y.tgz /y\nCOPY --from=build /app /app\nUSER 1000:1000\n";
    assert_eq!(
        ids("Containerfile", text),
        [("RP014", 4), ("RP015", 5), ("RP018", 7), ("RP002", 9)]
    );
    // USER root after a non-root user; scratch is not an image to pin.
    let text = "FROM scratch AS a\nFROM a\nUSER 10001\nUSER root\n";
    assert_eq!(ids("Dockerfile.x", text), [("RP001", 4)]);
    // The user carries over from the stage the final one is built FROM.
    let text = "FROM alpine:3@sha256:00 AS base\nUSER 10001\nFROM base\nRUN true\n";
    assert_eq!(ids("d", text), []);
}

#[test]
fn suppressions_need_a_reason() {
    let text = "services:\n  a:\n    # rampart-lint: ignore RP001,RP003 reason=\"image runs as nobody; data dir written\"\n    image: x:1@sha256:00 # rampart-lint: ignore RP013 reason=\"not reached\"\n    cap_drop: [ALL]\n    security_opt: [no-new-privileges]\n    cpus: 1\n    mem_limit: 64m\n    healthcheck: {test: [CMD, \"true\"]}\n";
    // Line 3 covers line 4 (the next line), but the findings are on the service key
    // (line 2): nothing is suppressed there.
    assert_eq!(ids("c.yaml", text), [("RP001", 2), ("RP003", 2)]);
    let text = "services:\n  # rampart-lint: ignore RP001,RP003 reason=\"runs as nobody\"\n  a:\n    image: x:1@sha256:00\n    cap_drop: [ALL]\n    security_opt: [no-new-privileges]\n    cpus: 1\n    mem_limit: 64m\n    healthcheck: {test: [CMD, \"true\"]}\n";
    assert_eq!(ids("c.yaml", text), []);
    // Without a reason: suppresses nothing, and is reported itself.
    let no_reason = text.replace(" reason=\"runs as nobody\"", "");
    let r = lint_source("c.yaml", &no_reason);
    let got: Vec<_> = r
        .findings
        .iter()
        .map(|f| (f.rule.id, f.line, f.severity()))
        .collect();
    assert_eq!(
        got,
        [
            ("RP020", 2, Severity::Warning),
            ("RP001", 3, Severity::Error),
            ("RP003", 3, Severity::Error),
        ]
    );
    // At the end of the finding's own line.
    let text = "FROM alpine:3.20@sha256:00 AS b\nFROM b\nUSER 10001\nADD https://x.example/a /a # rampart-lint: ignore RP018 reason=\"fetched over a pinned mirror\"\n";
    assert_eq!(ids("Dockerfile", text), []);
}

#[test]
fn kinds_are_detected_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("foo.txt"), HARDENED_POD).unwrap();
    std::fs::write(p.join("Containerfile"), "FROM scratch\nUSER 10001\n").unwrap();
    std::fs::write(p.join("notes.md"), "# hello\n").unwrap();
    std::fs::write(p.join("ci.yml"), "on: push\njobs: {}\n").unwrap();
    std::fs::write(p.join("helm.txt"), "{{ .Values.x }}: [\n").unwrap();
    let r = lint_paths(&[p.to_path_buf()]);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.files, 2);
    // scratch single stage: RP017 only.
    let got: Vec<_> = r.findings.iter().map(|f| f.rule.id).collect();
    assert_eq!(got, ["RP017"]);
}

#[test]
fn input_errors_exit_2_and_the_rest_is_still_linted() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("bad.yaml"), "a: [\n").unwrap();
    std::fs::write(
        p.join("Dockerfile"),
        "FROM alpine:latest\nUSER 10001\nFROM x\n",
    )
    .unwrap();
    std::fs::write(p.join("notes.md"), "# hello\n").unwrap();
    let r = lint_paths(&[
        p.join("missing.yaml"),
        p.join("bad.yaml"),
        p.join("notes.md"),
        p.join("Dockerfile"),
    ]);
    let errs: Vec<_> = r
        .errors
        .iter()
        .map(|e| e.file.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(errs, ["missing.yaml", "bad.yaml", "notes.md"]);
    assert!(r.errors[1].message.contains("YAML"), "{:?}", r.errors[1]);
    assert!(r.findings.iter().any(|f| f.rule.id == "RP013"));
    assert_eq!(r.exit_code(Severity::Error), 2);
    // A walk reports a broken .yaml but skips files of no known kind.
    let r = lint_paths(&[p.to_path_buf()]);
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.exit_code(Severity::Note), 2);
}

#[test]
fn fail_on_thresholds() {
    let r = lint_source("Containerfile", "FROM scratch\nUSER 10001\n");
    assert_eq!(r.exit_code(Severity::Error), 0);
    assert_eq!(r.exit_code(Severity::Warning), 1);
    assert_eq!(r.exit_code(Severity::Note), 1);
}

proptest::proptest! {
    /// What the fuzz targets assert, on generated text shaped like the inputs: no panic,
    /// every finding inside the input.
    #[test]
    fn findings_point_inside_the_input(
        s in "((FROM|USER|ADD|ENV|RUN|apiVersion: v1|kind: Pod|services:|  image: |  - |: |\\{|\\}|\\[|\\]|&a|\\*a|<<|# rampart-lint: ignore RP001|[a-z0-9:/@. ]{0,12})[\n ]?){0,40}",
        name in "(Dockerfile|x\\.yaml|Containerfile|y\\.txt)",
    ) {
        let report = lint_source(&name, &s);
        let lines = u32::try_from(s.lines().count()).unwrap().saturating_add(1);
        for f in &report.findings {
            proptest::prop_assert!(f.line >= 1 && f.line <= lines, "{f:?}");
            proptest::prop_assert!(f.column >= 1);
        }
    }
}
