//! API key parsing never panics; whatever it accepts has the documented shape (prefix,
//! 12-character id, 43-character secret, 6-character checksum, base62), and the
//! request-path `verify` on an empty cache refuses everything without panicking.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rampart_store::key;

fn cache() -> &'static rampart_store::ApiKeyCache {
    static C: OnceLock<rampart_store::ApiKeyCache> = OnceLock::new();
    C.get_or_init(|| {
        rampart_store::ApiKeyCache::new(&rampart_config::secret::Secret::new(vec![7u8; 32]))
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = key::parse(input) {
        assert_eq!(input.len(), key::KEY_LEN);
        assert!(input.starts_with(key::PREFIX));
        assert!(key::is_key_id(p.id));
        assert!(input.starts_with(p.body));
        assert_eq!(&p.body[key::PREFIX.len()..key::PREFIX.len() + key::ID_LEN], p.id);
        assert!(input.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        assert_eq!(
            &key::checksum(p.body.as_bytes())[..],
            &input.as_bytes()[p.body.len() + 1..]
        );
    }
    assert!(cache().verify(input).is_err());
});
