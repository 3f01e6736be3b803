//! The JWK Set parser on arbitrary bytes: no panic; a set it accepts is non-empty,
//! within the key bound, and every key verifies only algorithms of its own type (and
//! only its bound `alg` when it names one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_jwt::{Alg, jwk};

fuzz_target!(|data: &[u8]| {
    if let Ok((set, _skipped)) = jwk::parse_jwks(data, &Alg::ASYMMETRIC) {
        assert!(!set.is_empty());
        assert!(set.len() <= jwk::MAX_KEYS);
        for k in set.keys() {
            let mut n = 0;
            for a in k.algs() {
                n += 1;
                assert_eq!(a.family(), k.family);
                if let Some(b) = k.bound_alg {
                    assert_eq!(a, b);
                }
            }
            assert!(n > 0);
        }
    }
});
