//! The Dockerfile front end and rules must never panic, and every finding must point
//! at a line of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = rampart_lint::dockerfile::parse(&text);
    let lines = u32::try_from(text.lines().count()).unwrap_or(u32::MAX).max(1);
    if let Ok(ins) = &parsed {
        for i in ins {
            assert!(i.line >= 1 && i.line <= lines, "instruction line {} of {lines}", i.line);
        }
    }
    let report = rampart_lint::lint_source("Dockerfile", &text);
    for f in &report.findings {
        assert!(f.line >= 1 && f.line <= lines, "finding line {} of {lines}", f.line);
        assert!(f.column >= 1);
    }
});
