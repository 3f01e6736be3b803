//! The YAML front end (bounded depth, node count and alias expansion) and the Compose
//! and Kubernetes rules must never panic, and every finding must point inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = rampart_lint::yaml::parse_stream(&text);
    let lines = u32::try_from(text.lines().count()).unwrap_or(u32::MAX).saturating_add(1);
    let report = rampart_lint::lint_source("fuzz.yaml", &text);
    for f in &report.findings {
        assert!(f.line >= 1 && f.line <= lines, "finding line {} of {lines}", f.line);
        assert!(f.column >= 1);
    }
});
