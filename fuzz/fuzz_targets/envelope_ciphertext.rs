//! The envelope ciphertext reader (`rampart_crypto::envelope`): arbitrary bytes never
//! panic and never decrypt under a fixed keyset (authentication fails), the key id a
//! ciphertext names is what `ciphertext_key_id` reports, and a genuine ciphertext with
//! any byte changed never decrypts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_crypto::envelope::{DataKey, Keyset, ciphertext_key_id};

fuzz_target!(|data: &[u8]| {
    let mut ks = Keyset::new();
    let Ok(key) = DataKey::generate(1) else { return };
    let id = key.id().to_owned();
    ks.insert(key, true);
    // Arbitrary input: a parse error or an authentication failure, never plaintext.
    let _ = ciphertext_key_id(data);
    assert!(ks.decrypt(data, b"ctx").is_err());
    // A genuine ciphertext of the input round-trips, and any change is refused.
    let Ok(ct) = ks.encrypt(data, b"ctx") else { return };
    assert_eq!(ciphertext_key_id(&ct).ok(), Some(id.as_str()));
    assert_eq!(ks.decrypt(&ct, b"ctx").unwrap().as_slice(), data);
    assert!(ks.decrypt(&ct, b"other").is_err());
    if !ct.is_empty() {
        let i = data.first().map_or(0, |b| usize::from(*b)) % ct.len();
        let mut bad = ct.clone();
        if let Some(b) = bad.get_mut(i) {
            *b ^= 0x01;
        }
        assert!(ks.decrypt(&bad, b"ctx").is_err());
        assert!(ks.decrypt(&ct[..ct.len() - 1], b"ctx").is_err());
    }
});
