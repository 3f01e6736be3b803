//! The signed-note, checkpoint-body and prune-statement parsers used by `rampart audit
//! verify`: never panic on hostile text; a parsed checkpoint body re-encodes exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_audit::note::{Checkpoint, Note};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = Note::parse(text) {
        let _ = n.verify(&rampart_crypto::TrustedKeys::default());
        if let Ok(cp) = Checkpoint::parse_body(&n.body) {
            assert_eq!(cp.body(), n.body);
        }
        let _ = rampart_audit::retention::PruneStatement::parse_body(&n.body);
    }
    if let Ok(cp) = Checkpoint::parse_body(text) {
        assert_eq!(cp.body(), text);
    }
});
