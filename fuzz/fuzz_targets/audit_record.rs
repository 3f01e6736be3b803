//! The audit record parser used by `rampart audit verify`: never panics, and whatever it
//! accepts re-encodes to exactly the same bytes (one spelling per record).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = rampart_audit::record::parse(data) {
        let r = &p.record;
        let e = rampart_audit::Entry {
            request_id: r.request_id.clone(),
            subject: r.subject.clone(),
            tenant: r.tenant.clone(),
            auth: r.auth.clone(),
            client_ip: r.client_ip.clone(),
            method: r.method.clone(),
            route: r.route.clone(),
            path: r.path.clone(),
            status: r.status,
            decision: r.decision.clone(),
            reason: r.reason.clone(),
            latency_us: r.latency_us,
        };
        let mut out = Vec::new();
        let h = rampart_audit::record::encode(&mut out, r.seq, &r.ts, &e, &p.prev);
        assert_eq!(h, p.computed_hash);
        if p.stated_hash == p.computed_hash {
            assert_eq!(&out[..out.len() - 1], data);
        }
    }
});
