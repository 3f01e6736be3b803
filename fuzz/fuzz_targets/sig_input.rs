//! `Signature-Input` as the verifier reads it: no panic; each member's raw text is a
//! piece of the input that parses back to the same value (so `@signature-params` is the
//! member as sent); a signature base built from it ends with that raw text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_sig::sf::{self, Member};
use rampart_sig::{Component, RequestParts};

fuzz_target!(|data: &[u8]| {
    let Ok(dict) = sf::parse_dictionary(data) else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    let headers = http::HeaderMap::new();
    let req = RequestParts {
        method: "POST",
        scheme: "https",
        authority: "api.example.com",
        target: "/a?b",
        headers: &headers,
    };
    for m in &dict.members {
        assert!(text.contains(&m.raw), "raw {:?} not in input", m.raw);
        // A member written without `=` (boolean true) keeps only its parameters as raw
        // text: empty or starting with ';'. A value never starts that way.
        let again = if m.raw.is_empty() || m.raw.starts_with(';') {
            format!("{}{}", m.key, m.raw)
        } else {
            format!("{}={}", m.key, m.raw)
        };
        let back = sf::parse_dictionary(again.as_bytes()).expect("raw member reparses");
        assert_eq!(back.members.len(), 1);
        assert_eq!(back.members.first().map(|b| &b.value), Some(&m.value));
        if let Member::InnerList(list) = &m.value {
            let comps: Result<Vec<Component>, _> =
                list.items.iter().map(Component::from_item).collect();
            if let Ok(comps) = comps {
                if let Ok(base) = rampart_sig::base::signature_base(&req, &comps, &m.raw) {
                    assert!(base.ends_with(m.raw.as_bytes()));
                }
            }
        }
    }
});
