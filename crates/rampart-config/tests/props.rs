//! Property tests: the loader never panics, whatever the text or the environment, and
//! valid route templates survive loading unchanged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;

const KEYS: &[&str] = &[
    "profile",
    "listen",
    "admin_listen",
    "trusted_hosts",
    "trusted_proxies",
    "data_dir",
    "allowed_data_roots",
    "max_header_bytes",
    "max_connections",
    "url",
    "id",
    "path",
    "methods",
    "upstream",
    "public",
    "tier",
    "scopes",
    "modes",
    "hs256_secret",
    "jwks_url",
    "allowed_algs",
    "kek",
    "tls",
    "cert",
    "key",
    "client_ca",
    "client_auth",
    "content_security_policy",
    "retention",
    "tiers",
    "per_minute",
];
const HEADERS: &[&str] = &[
    "",
    "[server]",
    "[server.tls]",
    "[upstreams.app]",
    "[[routes]]",
    "[headers]",
    "[auth]",
    "[auth.jwt]",
    "[rate_limit]",
    "[rate_limit.tiers.x]",
    "[audit]",
    "[crypto]",
    "[store]",
    "[rbac.roles]",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<bool>().prop_map(|v| v.to_string()),
        "[a-zA-Z0-9:/._*{}%? -]{0,24}".prop_map(|s| format!("{s:?}")),
        prop::collection::vec("[a-zA-Z0-9:/._{}-]{0,10}", 0..4).prop_map(|v| format!("{v:?}")),
        Just("\"env:NOPE\"".to_owned()),
        Just("\"file:/etc/passwd\"".to_owned()),
        Just("\"file:/\"".to_owned()),
        Just("{ a = 1 }".to_owned()),
    ]
}

fn doc() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(HEADERS),
            prop::sample::select(KEYS),
            value(),
        ),
        0..12,
    )
    .prop_map(|lines| {
        lines
            .into_iter()
            .map(|(h, k, v)| format!("{h}\n{k} = {v}\n"))
            .collect::<String>()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = rampart_config::load_from_strs(&[("p.toml", &text)], &[]);
    }

    #[test]
    fn structured_documents_never_panic(a in doc(), b in doc()) {
        match rampart_config::load_from_strs(&[("a.toml", &a), ("b.toml", &b)], &[]) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(!e.errors.is_empty());
                for d in &e.errors {
                    prop_assert!(d.file == "a.toml" || d.file == "b.toml" || d.file.starts_with("env:"), "{}", d);
                }
            }
        }
    }

    #[test]
    fn arbitrary_env_overrides_never_panic(
        key in prop::sample::select(vec![
            "RAMPART_PROFILE", "RAMPART_SERVER__LISTEN", "RAMPART_SERVER__TRUSTED_HOSTS",
            "RAMPART_SERVER__TLS", "RAMPART_SERVER", "RAMPART_ROUTES", "RAMPART_UPSTREAMS__APP",
            "RAMPART_AUTH__JWT__HS256_SECRET", "RAMPART_RATE_LIMIT__TIERS", "RAMPART___", "RAMPART_A__B__C",
            "RAMPART_SERVER__MAX_CONNECTIONS", "RAMPART_HEADERS__X_FRAME_OPTIONS",
        ]),
        value in any::<String>(),
        name in "RAMPART_[A-Z_]{0,20}",
        value2 in value(),
    ) {
        let env = vec![(key.to_owned(), value), (name, value2)];
        let base = "profile = \"dev\"\n[upstreams.app]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nid = \"r\"\npath = \"/\"\nupstream = \"app\"\n";
        let _ = rampart_config::load_from_strs(&[("e.toml", base)], &env);
    }

    #[test]
    fn valid_templates_round_trip(
        segs in prop::collection::vec(
            prop_oneof![
                "[a-zA-Z0-9_~-][a-zA-Z0-9._~-]{0,8}".prop_filter("dots", |s| s != "." && s != ".."),
                Just(String::from("{}")),
            ],
            0..6,
        ),
        trailing in any::<bool>(),
    ) {
        let mut n = 0;
        let segs: Vec<String> = segs
            .into_iter()
            .map(|s| if s == "{}" { n += 1; format!("{{p{n}}}") } else { s })
            .collect();
        let template = format!("/{}", segs.join("/"));
        let written = if trailing && template != "/" { format!("{template}/") } else { template.clone() };
        let text = format!(
            "profile = \"dev\"\n[upstreams.app]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nid = \"r\"\npath = {written:?}\nupstream = \"app\"\n"
        );
        let cfg = rampart_config::load_from_strs(&[("t.toml", &text)], &[]);
        let cfg = match cfg { Ok(c) => c, Err(e) => return Err(TestCaseError::fail(format!("{written}: {e}"))) };
        prop_assert_eq!(&cfg.routes[0].path, &template);
    }
}
