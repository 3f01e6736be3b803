//! Loading: schema errors, overlay, environment overrides, secrets, profile rules,
//! routes and headers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use rampart_config::{ClientAuth, Profile};

// ---- schema ---------------------------------------------------------------------------

#[test]
fn defaults_are_safe() {
    let c = load(&dev("")).unwrap();
    assert_eq!(c.profile, Profile::Dev);
    assert_eq!(
        c.server.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        c.server.admin_listen,
        Some("127.0.0.1:9090".parse().unwrap())
    );
    assert_eq!(c.server.max_header_bytes, 16384);
    assert_eq!(c.server.header_read_timeout, Duration::from_millis(5000));
    assert_eq!(c.server.request_timeout, Duration::from_secs(30));
    assert_eq!(c.server.max_connections, 10_000);
    assert_eq!(c.server.max_body_bytes, 1_048_576);
    assert_eq!(c.server.upstream_connect_timeout, Duration::from_secs(2));
    assert_eq!(c.server.drain_timeout, Duration::from_secs(30));
    assert_eq!(c.server.idle_timeout, Duration::from_secs(60));
    assert!(c.server.access_log);
    assert_eq!(c.headers.x_frame_options.as_deref(), Some("DENY"));
    assert_eq!(
        c.headers.content_security_policy.as_deref(),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert_eq!(
        c.headers.cross_origin_opener_policy.as_deref(),
        Some("same-origin")
    );
    // Dev with no trusted_hosts: a warning, not an error.
    assert!(
        c.warnings.iter().any(|w| w.contains("trusted_hosts")),
        "{:?}",
        c.warnings
    );
    // Profile defaults to prod.
    let e = errors("[upstreams.app]\nurl = \"http://127.0.0.1:1\"\n");
    assert!(e.errors.iter().any(|d| d.code == "profile"), "{e}");
}

#[test]
fn design_example_loads() {
    let text = r#"
profile = "prod"
[server]
listen = "0.0.0.0:8443"
admin_listen = "127.0.0.1:9090"
trusted_hosts = ["api.example.com"]
trusted_proxies = ["10.0.0.0/8"]
data_dir = "/var/lib/rampart"
allowed_data_roots = ["/var/lib/rampart"]
max_header_bytes = 16384
header_read_timeout_ms = 5000
request_timeout_ms = 30000
max_connections = 10000

[upstreams.app]
url = "http://127.0.0.1:3000"

[auth]
modes = ["jwt", "api_key", "mtls", "signature"]
identity_header = "x-auth-request-user"

[auth.jwt]
header = "authorization"
bearer_prefix = "bearer "
issuer = "https://id.example.com/"
audience = ["rampart"]
subject_claim = "sub"
clock_skew_s = 60
allowed_algs = ["RS256", "ES256", "EdDSA"]
jwks_url = "https://id.example.com/.well-known/jwks.json"
jwks_ttl_s = 300
jwks_timeout_ms = 2000
jwks_max_attempts = 3
jwks_backoff_ms = 200
jwks_max_backoff_ms = 5000
scopes_claim = "scope"
roles_claim = "roles"
tenant_claim = "tenant"

[auth.api_key]
header = "x-api-key"
pepper = "env:RAMPART_API_KEY_PEPPER"

[auth.mtls]
identity_header = "x-ssl-client-subject"
scopes_header = "x-ssl-client-scopes"
roles_header = "x-ssl-client-roles"

[auth.signature]
max_age_s = 300

[rbac]
enabled = true
[rbac.roles]
admin = ["*"]
analyst = ["discover", "evaluate", "jobs", "metrics"]

[rate_limit]
backend = "memory"
redis_url = "redis://127.0.0.1:6379"
on_backend_error = "deny"
tiers.default = { per_minute = 600, burst = 100 }
tiers.heavy   = { per_minute = 60,  burst = 10 }
tenant = { per_minute = 6000, burst = 1000 }

[[routes]]
id = "discover"
path = "/api/discover"
methods = ["POST"]
upstream = "app"
scopes = ["discover"]
tier = "heavy"
max_body_bytes = 1048576

[[routes]]
id = "tenant-jobs"
path = "/tenants/{tenant}/jobs"
upstream = "app"
scopes = ["jobs"]

[[routes]]
id = "public-status"
path = "/status"
upstream = "app"
public = true

[headers]
content_security_policy = "default-src 'none'; frame-ancestors 'none'"
strict_transport_security = "max-age=63072000; includeSubDomains"

[audit]
dir = "audit"
on_failure = "deny"
checkpoint_every_records = 1000
checkpoint_every_s = 10
redact_query_params = ["token", "code", "password"]
retention = { hot_days = 7, warm_days = 30, cold_days = 180 }

[signing]
provider = "env"
key_id = "audit-2026"

[crypto]
kek = "env:RAMPART_KEK"

[store]
url = "sqlite://rampart.db"

[redis]
url = "redis://127.0.0.1:6379"
"#;
    let e = env(&[
        (
            "RAMPART_KEK",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ),
        (
            "RAMPART_API_KEY_PEPPER",
            "0123456789abcdef0123456789abcdef-pepper",
        ),
    ]);
    let c = rampart_config::load_from_strs(&[("rampart.toml", text)], &e).unwrap();
    assert_eq!(c.routes.len(), 3);
    assert_eq!(c.routes[1].path, "/tenants/{tenant}/jobs");
    assert_eq!(c.routes[0].methods, vec![http::Method::POST]);
    assert_eq!(c.routes[0].tier.as_deref(), Some("heavy"));
    assert_eq!(c.server.trusted_proxies[0].to_string(), "10.0.0.0/8");
    let auth = c.later.auth.as_ref().unwrap();
    assert_eq!(auth.jwt.as_ref().unwrap().jwks_ttl_s, Some(300));
    assert_eq!(
        c.later.identity_header_names(),
        vec![
            "x-auth-request-user",
            "x-ssl-client-subject",
            "x-ssl-client-scopes",
            "x-ssl-client-roles"
        ]
    );
    assert!(!c.later.anonymous_allowed());
    assert_eq!(
        c.later.rate_limit.as_ref().unwrap().tiers["heavy"].per_minute,
        Some(60)
    );
    assert_eq!(
        c.later
            .crypto
            .as_ref()
            .unwrap()
            .kek
            .as_ref()
            .unwrap()
            .source(),
        "env:RAMPART_KEK"
    );
    assert!(format!("{c:?}").contains("[redacted]"));
    assert!(!format!("{c:?}").contains("AAAAAAAA"));
}

#[test]
fn unknown_key_has_line_suggestion_and_valid_list() {
    let text =
        "profile = \"dev\"\n\n[server]\nlisten = \"127.0.0.1:1\"\nlistne = \"127.0.0.1:2\"\n";
    let e = errors(text);
    let d = diag(&e, "server.listne");
    assert_eq!(d.file, "cfg.toml");
    assert_eq!(d.line, Some(5));
    assert_eq!(d.code, "unknown-key");
    assert!(d.message.contains("did you mean `listen`?"), "{d}");
    assert!(d.message.contains("valid: listen, admin_listen"), "{d}");
    assert!(
        d.to_string()
            .starts_with("cfg.toml:5: server.listne: unknown key; did you mean `listen`?"),
        "{d}"
    );
}

#[test]
fn unknown_keys_everywhere() {
    let cases = [
        ("prfile = \"dev\"\n", "prfile", "profile"),
        (
            "[server.tls]\ncert = \"/x\"\nkye = \"env:K\"\n",
            "server.tls.kye",
            "key",
        ),
        (
            "[upstreams.app]\nurl = \"http://a\"\nulr = \"x\"\n",
            "upstreams.app.ulr",
            "url",
        ),
        (
            "[[routes]]\nid = \"a\"\npath = \"/\"\nupstream = \"app\"\nmethod = [\"GET\"]\n",
            "routes[0].method",
            "methods",
        ),
        (
            "[headers]\ncontent_security_polcy = \"x\"\n",
            "headers.content_security_polcy",
            "content_security_policy",
        ),
        (
            "[auth.jwt]\njwks_ulr = \"https://a\"\n",
            "auth.jwt.jwks_ulr",
            "jwks_url",
        ),
        ("[auth]\nmode = [\"jwt\"]\n", "auth.mode", "modes"),
        (
            "[rate_limit]\nbackedn = \"memory\"\n",
            "rate_limit.backedn",
            "backend",
        ),
        (
            "[rate_limit.tiers.x]\nper_minut = 1\n",
            "rate_limit.tiers.x.per_minut",
            "per_minute",
        ),
        (
            "[audit.retention]\nhot_day = 1\n",
            "audit.retention.hot_day",
            "hot_days",
        ),
        ("[signing]\nkeyid = \"a\"\n", "signing.keyid", "key_id"),
        ("[crypto]\nkeks = \"x\"\n", "crypto.keks", "kek"),
        ("[store]\nurls = \"x\"\n", "store.urls", "url"),
        ("[rbac]\nenable = true\n", "rbac.enable", "enabled"),
    ];
    for (snippet, key, suggestion) in cases {
        let e = errors(&format!("profile = \"dev\"\n{snippet}"));
        let d = diag(&e, key);
        assert_eq!(d.code, "unknown-key", "{d}");
        assert!(d.line.is_some(), "{d}");
        assert!(
            d.message.contains(&format!("did you mean `{suggestion}`")),
            "{d}"
        );
    }
}

#[test]
fn wrong_types_name_expected_and_found() {
    let e = errors(&dev(
        "[server]\nmax_connections = \"many\"\naccess_log = \"yes\"\ntrusted_hosts = \"a.example\"\n",
    ));
    let d = diag(&e, "server.max_connections");
    assert_eq!(d.line, Some(10));
    assert_eq!(d.code, "wrong-type");
    assert!(
        d.message.contains("expected an integer, found string"),
        "{d}"
    );
    assert!(
        diag(&e, "server.access_log")
            .message
            .contains("expected a boolean")
    );
    assert!(
        diag(&e, "server.trusted_hosts")
            .message
            .contains("expected an array of strings")
    );
    let e = errors(&dev("[server]\nmax_header_bytes = 10\n"));
    assert!(
        diag(&e, "server.max_header_bytes")
            .message
            .contains("between 1024 and 1048576")
    );
    let e = errors(&dev("[server]\nheader_read_timeout_ms = 0\n"));
    assert_eq!(
        diag(&e, "server.header_read_timeout_ms").code,
        "out-of-range"
    );
    let e = errors("profile = \"dev\"\nserver = 3\n");
    assert!(
        diag(&e, "server").message.contains("expected a table"),
        "{e}"
    );
}

#[test]
fn all_errors_are_reported_at_once_in_line_order() {
    let text = "profile = \"dev\"\n[server]\nlistne = \"x\"\nmax_connections = 0\n[[routes]]\nid = \"a b\"\npath = \"nope\"\nupstream = \"ghost\"\n[headers]\nx_frame_options = \"a\\nb\"\n";
    let e = errors(text);
    assert!(e.errors.len() >= 6, "{e}");
    for k in [
        "server.listne",
        "server.max_connections",
        "routes[0].id",
        "routes[0].path",
        "routes[0].upstream",
        "headers.x_frame_options",
    ] {
        diag(&e, k);
    }
    let lines: Vec<usize> = e.errors.iter().filter_map(|d| d.line).collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted, "{e}");
    assert_eq!(e.to_string().lines().count(), e.errors.len());
}

#[test]
fn syntax_errors_have_lines() {
    let e = errors("profile = \"dev\"\n[server\nlisten = 1\n");
    assert_eq!(e.errors[0].code, "syntax");
    assert_eq!(e.errors[0].line, Some(2), "{e}");
    assert!(
        e.to_string().starts_with("cfg.toml:2: TOML syntax error"),
        "{e}"
    );
}

#[test]
fn server_values() {
    let c = load(&dev(
        "[server]\nlisten = \"[::1]:8443\"\nadmin_listen = \"off\"\ntrusted_hosts = [\"API.Example.com\", \"*.example.org\", \"api.example.com\"]\ntrusted_proxies = [\"10.1.2.3\", \"192.168.0.0/16\", \"::1\"]\ndata_dir = \"/var/lib/rampart/./data\"\nallowed_data_roots = [\"/var/lib/rampart\"]\nidle_timeout_ms = 1500\naccess_log = false\n",
    ))
    .unwrap();
    assert_eq!(c.server.listen.port(), 8443);
    assert_eq!(c.server.admin_listen, None);
    assert_eq!(
        c.server.trusted_hosts,
        vec!["api.example.com", "*.example.org"]
    );
    let p: Vec<String> = c
        .server
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(p, vec!["10.1.2.3/32", "192.168.0.0/16", "::1/128"]);
    assert_eq!(
        c.server.data_dir.as_deref(),
        Some(std::path::Path::new("/var/lib/rampart/data"))
    );
    assert_eq!(c.server.idle_timeout, Duration::from_millis(1500));
    assert!(!c.server.access_log);
    assert_eq!(
        load(&dev("[server]\nadmin_listen = \"\"\n"))
            .unwrap()
            .server
            .admin_listen,
        None
    );

    let e = errors(&dev(
        "[server]\nlisten = \"localhost:80\"\ntrusted_hosts = [\"https://a.example\", \"a.example:443\", \"a b\"]\ntrusted_proxies = [\"10.0.0.0/40\", \"nope\"]\ndata_dir = \"relative\"\nallowed_data_roots = [\"/a/../b\"]\n",
    ));
    assert!(diag(&e, "server.listen").message.contains("IP:port"));
    assert!(
        diag(&e, "server.trusted_hosts[0]")
            .message
            .contains("scheme")
    );
    assert!(diag(&e, "server.trusted_hosts[1]").message.contains("port"));
    assert!(
        diag(&e, "server.trusted_hosts[2]")
            .message
            .contains("spaces")
    );
    diag(&e, "server.trusted_proxies[0]");
    diag(&e, "server.trusted_proxies[1]");
    assert!(diag(&e, "server.data_dir").message.contains("absolute"));
    assert!(
        diag(&e, "server.allowed_data_roots[0]")
            .message
            .contains("..")
    );
}

#[test]
fn upstream_urls() {
    let e = errors(
        "profile = \"dev\"\n[upstreams.a]\nurl = \"ftp://x\"\n[upstreams.b]\nurl = \"http://u:p@x\"\n[upstreams.c]\nurl = \"http://x/?q=1\"\n[upstreams.\"bad name\"]\nurl = \"http://x\"\n[upstreams.d]\n",
    );
    assert!(
        diag(&e, "upstreams.a.url")
            .message
            .contains("http or https")
    );
    assert!(diag(&e, "upstreams.b.url").message.contains("credentials"));
    assert!(diag(&e, "upstreams.c.url").message.contains("query"));
    diag(&e, "upstreams.bad name");
    assert_eq!(diag(&e, "upstreams.d.url").code, "missing-key");
    let c = load(&dev(
        "[upstreams.p]\nurl = \"https://api.internal:8443/base\"\n",
    ))
    .unwrap();
    assert_eq!(c.upstreams["p"].url.path(), "/base");
}

// ---- overlay --------------------------------------------------------------------------

#[test]
fn overlay_deep_merges_tables_and_replaces_arrays() {
    let dir = scratch();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    write(
        &a,
        "profile = \"dev\"\n[server]\nlisten = \"127.0.0.1:7000\"\ntrusted_hosts = [\"a.example\", \"b.example\"]\n[upstreams.app]\nurl = \"http://127.0.0.1:1\"\n[[routes]]\nid = \"one\"\npath = \"/one\"\nupstream = \"app\"\n[[routes]]\nid = \"two\"\npath = \"/two\"\nupstream = \"app\"\n",
        0o644,
    );
    write(
        &b,
        "[server]\nmax_connections = 5\ntrusted_hosts = [\"c.example\"]\n[upstreams.other]\nurl = \"http://127.0.0.1:2\"\n[[routes]]\nid = \"three\"\npath = \"/three\"\nupstream = \"other\"\n",
        0o644,
    );
    let c = rampart_config::load_with_env(&[a.clone(), b.clone()], &[]).unwrap();
    assert_eq!(c.server.listen.port(), 7000);
    assert_eq!(c.server.max_connections, 5);
    assert_eq!(c.server.trusted_hosts, vec!["c.example"]);
    assert_eq!(c.upstreams.len(), 2);
    let ids: Vec<&str> = c.routes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["three"]);
    assert_eq!(c.sources, vec![a.clone(), b.clone()]);

    // An error in the second file names the second file and its line.
    write(&b, "[server]\n\nmax_conections = 5\n", 0o644);
    let e = rampart_config::load_with_env(&[a.clone(), b.clone()], &[]).unwrap_err();
    let d = diag(&e, "server.max_conections");
    assert_eq!(d.file, b.display().to_string());
    assert_eq!(d.line, Some(3));

    // A missing file is an error naming it.
    let missing = dir.path().join("missing.toml");
    let e = rampart_config::load_with_env(&[a, missing.clone()], &[]).unwrap_err();
    assert_eq!(e.errors[0].file, missing.display().to_string());
    assert_eq!(e.errors[0].code, "config-file");
}

// ---- environment ----------------------------------------------------------------------

#[test]
fn env_overrides_number_bool_array_string() {
    let c = load_env(
        &prod("", ""),
        &[
            ("RAMPART_PROFILE", "dev"),
            ("RAMPART_SERVER__LISTEN", "0.0.0.0:8443"),
            ("RAMPART_SERVER__MAX_CONNECTIONS", "77"),
            ("RAMPART_SERVER__ACCESS_LOG", "false"),
            (
                "RAMPART_SERVER__TRUSTED_HOSTS",
                "[\"x.example\", \"y.example\"]",
            ),
            ("RAMPART_AUTH__JWT__ISSUER", "12345"),
            ("RAMPART_UPSTREAMS__APP__URL", "http://127.0.0.1:4000"),
            ("RAMPART_LOG", "debug"),
            ("RAMPART_JWT_SECRET", "not an override"),
            ("OTHER__THING", "ignored"),
        ],
    )
    .unwrap();
    assert_eq!(c.profile, Profile::Dev);
    assert_eq!(
        c.server.listen,
        "0.0.0.0:8443".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.server.max_connections, 77);
    assert!(!c.server.access_log);
    assert_eq!(c.server.trusted_hosts, vec!["x.example", "y.example"]);
    let jwt = c.later.auth.unwrap().jwt.unwrap();
    assert_eq!(jwt.issuer.as_deref(), Some("12345"));
    assert_eq!(c.upstreams["app"].url.port_u16(), Some(4000));
    // Routable listener without TLS in dev: a warning.
    assert!(
        c.warnings.iter().any(|w| w.contains("server.listen")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn env_override_errors_name_the_variable() {
    let e = load_env(
        &dev(""),
        &[
            ("RAMPART_SERVER__LISTNE", "127.0.0.1:1"),
            ("RAMPART_SERVER__MAX_CONNECTIONS", "lots"),
            ("RAMPART_SERVER__TRUSTED_HOSTS", "a.example"),
            ("RAMPART_SERVR__LISTEN", "127.0.0.1:1"),
            ("RAMPART_SERVER____LISTEN", "x"),
        ],
    )
    .unwrap_err();
    let d = diag(&e, "server.listne");
    assert_eq!(d.file, "env:RAMPART_SERVER__LISTNE");
    assert_eq!(d.line, None);
    assert!(d.message.contains("did you mean `listen`"), "{d}");
    assert!(
        d.to_string()
            .starts_with("env:RAMPART_SERVER__LISTNE: server.listne: unknown key"),
        "{d}"
    );
    assert_eq!(
        diag(&e, "server.max_connections").file,
        "env:RAMPART_SERVER__MAX_CONNECTIONS"
    );
    assert!(
        diag(&e, "server.trusted_hosts")
            .message
            .contains("TOML array"),
        "{e}"
    );
    assert!(
        diag(&e, "servr").message.contains("did you mean `server`"),
        "{e}"
    );
    assert!(
        e.errors
            .iter()
            .any(|d| d.file == "env:RAMPART_SERVER____LISTEN"),
        "{e}"
    );
}

#[test]
fn env_specific_key_beats_whole_table() {
    let c = load_env(
        &dev(""),
        &[
            ("RAMPART_SERVER__MAX_CONNECTIONS", "9"),
            ("RAMPART_SERVER", "{ max_connections = 3 }"),
        ],
    )
    .unwrap();
    // RAMPART_SERVER is a single segment other than PROFILE: not an override.
    assert_eq!(c.server.max_connections, 9);
}

// ---- secrets --------------------------------------------------------------------------

#[test]
fn tls_from_env_and_file() {
    let dir = scratch();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    let ca = dir.path().join("ca.pem");
    write(&cert, PEM_CERT, 0o644);
    write(&key, PEM_KEY, 0o600);
    write(&ca, PEM_CERT, 0o644);
    let text = prod(
        &format!(
            "tls = {{ cert = \"{}\", key = \"env:TLS_KEY\" }}",
            cert.display()
        ),
        "",
    );
    let c = load_env(&text, &[("TLS_KEY", PEM_KEY)]).unwrap();
    let tls = c.server.tls.unwrap();
    assert_eq!(tls.cert_pem, PEM_CERT.as_bytes());
    assert_eq!(tls.key_pem.expose(), PEM_KEY.as_bytes());
    assert_eq!(tls.client_auth, ClientAuth::None);
    assert!(tls.client_ca_pem.is_none());
    assert_eq!(format!("{:?}", tls.key_pem), "[redacted]");

    let text = prod(
        &format!(
            "tls = {{ cert = \"file:{}\", key = \"file:{}\", client_ca = \"{}\" }}",
            cert.display(),
            key.display(),
            ca.display()
        ),
        "",
    );
    let tls = load(&text).unwrap().server.tls.unwrap();
    assert_eq!(tls.client_auth, ClientAuth::Optional);
    // The editor's final newline is dropped from file secrets.
    assert_eq!(tls.key_pem.expose(), PEM_KEY.trim_end().as_bytes());
    assert_eq!(tls.key_pem.source(), format!("file:{}", key.display()));
    assert!(tls.client_ca_pem.is_some());

    let text = prod(
        &format!(
            "tls = {{ cert = \"{}\", key = \"file:{}\", client_auth = \"required\" }}",
            cert.display(),
            key.display()
        ),
        "",
    );
    assert!(
        diag(&errors(&text), "server.tls.client_auth")
            .message
            .contains("client_ca")
    );
}

#[test]
fn secret_file_modes_and_references() {
    let dir = scratch();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    write(&cert, PEM_CERT, 0o644);
    write(&key, PEM_KEY, 0o644);
    let tls = |k: &str| {
        prod(
            &format!("tls = {{ cert = \"{}\", key = \"{k}\" }}", cert.display()),
            "",
        )
    };

    let e = errors(&tls(&format!("file:{}", key.display())));
    let d = diag(&e, "server.tls.key");
    assert_eq!(d.code, "secret-file-mode");
    assert_eq!(
        d.message,
        format!(
            "secret file {} is readable by group/other (mode 0644); chmod 600",
            key.display()
        )
    );
    write(&key, PEM_KEY, 0o640);
    assert!(
        diag(
            &errors(&tls(&format!("file:{}", key.display()))),
            "server.tls.key"
        )
        .message
        .contains("0640")
    );
    write(&key, PEM_KEY, 0o600);
    assert!(load(&tls(&format!("file:{}", key.display()))).is_ok());

    // Missing file, missing/empty env var, a literal key, a directory.
    assert!(
        diag(&errors(&tls("file:/nonexistent/k")), "server.tls.key")
            .message
            .contains("does not exist")
    );
    assert!(
        diag(&errors(&tls("env:NOPE")), "server.tls.key")
            .message
            .contains("NOPE is not set")
    );
    let e = load_env(&tls("env:EMPTY"), &[("EMPTY", "")]).unwrap_err();
    assert!(diag(&e, "server.tls.key").message.contains("empty"));
    let e = errors(&tls(PEM_KEY.replace('\n', "\\n").as_str()));
    assert_eq!(diag(&e, "server.tls.key").code, "secret-literal");
    assert!(
        diag(
            &errors(&tls(&format!("file:{}", dir.path().display()))),
            "server.tls.key"
        )
        .message
        .contains("not a regular file")
    );
    // Not PEM.
    let e = load_env(&tls("env:K"), &[("K", "just text")]).unwrap_err();
    assert!(diag(&e, "server.tls.key").message.contains("PEM"));
}

#[test]
fn relative_file_secrets_are_relative_to_the_config_file() {
    let dir = scratch();
    write(&dir.path().join("tls.crt"), PEM_CERT, 0o644);
    write(&dir.path().join("tls.key"), PEM_KEY, 0o600);
    let cfg = dir.path().join("rampart.toml");
    write(
        &cfg,
        &prod("tls = { cert = \"tls.crt\", key = \"file:tls.key\" }", ""),
        0o644,
    );
    let c = rampart_config::load_with_env(&[cfg], &[]).unwrap();
    assert!(c.server.tls.is_some());
}

#[test]
fn hs256_secret_rules() {
    let secret = "0123456789abcdef0123456789abcdef";
    let text =
        dev("[auth.jwt]\nhs256_secret = \"env:RAMPART_JWT_SECRET\"\nallowed_algs = [\"HS256\"]\n");
    let c = load_env(&text, &[("RAMPART_JWT_SECRET", secret)]).unwrap();
    let j = c.later.auth.as_ref().unwrap().jwt.as_ref().unwrap();
    assert_eq!(j.hs256_secret.as_ref().unwrap().expose(), secret.as_bytes());
    assert!(
        c.warnings.iter().any(|w| w.contains("hs256_secret")),
        "{:?}",
        c.warnings
    );
    assert!(
        c.warnings.iter().any(|w| w.contains("allowed_algs")),
        "{:?}",
        c.warnings
    );
    let e = load_env(&text, &[("RAMPART_JWT_SECRET", "short")]).unwrap_err();
    assert!(
        diag(&e, "auth.jwt.hs256_secret")
            .message
            .contains("32 bytes")
    );
}

// ---- profile rules --------------------------------------------------------------------

/// Loads `extra` in prod (expects a `profile` error at `key`) and in dev (expects OK
/// with a warning mentioning `key`).
fn prod_refuses_dev_warns(server_extra: &str, extra: &str, key: &str, env_pairs: &[(&str, &str)]) {
    let text = prod(server_extra, extra);
    let e = load_env(&text, env_pairs).unwrap_err();
    let d = diag(&e, key);
    assert_eq!(d.code, "profile", "{d}");
    assert!(d.message.contains("prod"), "{d}");
    assert!(d.line.is_some(), "{d}");
    let dev_text = text.replace("profile = \"prod\"", "profile = \"dev\"");
    let c = load_env(&dev_text, env_pairs).unwrap_or_else(|e| panic!("dev refused:\n{e}"));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains(key) && w.starts_with("dev profile")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn profile_hs256() {
    let s = [("S", "0123456789abcdef0123456789abcdef")];
    prod_refuses_dev_warns(
        "",
        "[auth.jwt]\nhs256_secret = \"env:S\"\n",
        "auth.jwt.hs256_secret",
        &s,
    );
    prod_refuses_dev_warns(
        "",
        "[auth.jwt]\nallowed_algs = [\"RS256\", \"HS256\"]\n",
        "auth.jwt.allowed_algs",
        &[],
    );
}

#[test]
fn profile_plain_http_jwks() {
    prod_refuses_dev_warns(
        "",
        "[auth.jwt]\njwks_url = \"http://127.0.0.1:8081/jwks.json\"\n",
        "auth.jwt.jwks_url",
        &[],
    );
    // Non-loopback plain HTTP: refused even in dev.
    let e = errors(&dev(
        "[auth.jwt]\njwks_url = \"http://id.example.com/jwks.json\"\n",
    ));
    assert!(diag(&e, "auth.jwt.jwks_url").message.contains("loopback"));
    assert!(
        load(&prod(
            "",
            "[auth.jwt]\njwks_url = \"https://id.example.com/jwks.json\"\n"
        ))
        .is_ok()
    );
}

#[test]
fn profile_auth_mode_none() {
    prod_refuses_dev_warns(
        "",
        "[auth]\nmodes = [\"jwt\", \"none\"]\n",
        "auth.modes",
        &[],
    );
    let c = load(&dev("[auth]\nmodes = [\"none\"]\n")).unwrap();
    assert!(c.later.anonymous_allowed());
    let e = errors(&dev("[auth]\nmodes = [\"jwt\", \"oauth\", \"jwt\"]\n"));
    assert!(
        diag(&e, "auth.modes[1]")
            .message
            .contains("valid: jwt, api_key, mtls, signature, none")
    );
    assert!(diag(&e, "auth.modes[2]").message.contains("twice"));
}

#[test]
fn profile_empty_trusted_hosts() {
    let text = prod("", "").replace(
        "trusted_hosts = [\"api.example.com\"]",
        "trusted_hosts = []",
    );
    let e = errors(&text);
    let d = diag(&e, "server.trusted_hosts");
    assert_eq!(d.code, "profile");
    assert_eq!(d.line, Some(3));
    let c = load(&text.replace("profile = \"prod\"", "profile = \"dev\"")).unwrap();
    assert!(c.warnings.iter().any(|w| w.contains("trusted_hosts")));
}

#[test]
fn profile_routable_listener_without_tls() {
    prod_refuses_dev_warns("listen = \"0.0.0.0:8080\"", "", "server.listen", &[]);
    // Allowed when TLS ends at a trusted proxy.
    assert!(
        load(&prod(
            "listen = \"0.0.0.0:8080\"\ntrusted_proxies = [\"10.0.0.0/8\"]",
            ""
        ))
        .is_ok()
    );
    // Loopback needs neither.
    assert!(load(&prod("listen = \"127.0.0.1:8080\"", "")).is_ok());
}

// ---- routes ---------------------------------------------------------------------------

#[test]
fn route_validation() {
    let text = "profile = \"dev\"\n[upstreams.app]\nurl = \"http://127.0.0.1:1\"\n[rate_limit.tiers.heavy]\nper_minute = 6\n\
        [[routes]]\nid = \"ok\"\npath = \"/a/{x}/\"\nupstream = \"app\"\nmethods = [\"get\", \"GET\", \"post\"]\ntier = \"heavy\"\n\
        [[routes]]\nid = \"ok\"\npath = \"/b\"\nupstream = \"ap\"\ntier = \"hevy\"\n\
        [[routes]]\nid = \"c\"\npath = \"/c/../d\"\nupstream = \"app\"\nmethods = [\"GE T\"]\n\
        [[routes]]\npath = \"/e\"\n\
        [[routes]]\nid = \"pub\"\npath = \"/p\"\nupstream = \"app\"\npublic = true\nscopes = [\"read\"]\n\
        [[routes]]\nid = \"shadow\"\npath = \"/a/{y}\"\nupstream = \"app\"\nmethods = [\"POST\"]\n\
        [[routes]]\nid = \"bad-scope\"\npath = \"/s\"\nupstream = \"app\"\nscopes = [\"a b\"]\n";
    let e = errors(text);
    assert!(
        diag(&e, "routes[1].id")
            .message
            .contains("duplicate route id `ok` (first at line 7)"),
        "{e}"
    );
    assert!(
        diag(&e, "routes[1].upstream")
            .message
            .contains("did you mean `app`"),
        "{e}"
    );
    assert!(
        diag(&e, "routes[1].tier")
            .message
            .contains("did you mean `heavy`"),
        "{e}"
    );
    assert!(diag(&e, "routes[2].path").message.contains("`..`"), "{e}");
    assert!(
        diag(&e, "routes[2].methods[0]")
            .message
            .contains("not an HTTP method"),
        "{e}"
    );
    assert_eq!(diag(&e, "routes[3].id").code, "missing-key");
    assert_eq!(diag(&e, "routes[3].upstream").code, "missing-key");
    assert!(
        diag(&e, "routes[4].scopes").message.contains("public"),
        "{e}"
    );
    assert!(
        diag(&e, "routes[5].path")
            .message
            .contains("can never match"),
        "{e}"
    );
    diag(&e, "routes[6].scopes[0]");

    let c = load(
        "profile = \"dev\"\n[upstreams.app]\nurl = \"http://127.0.0.1:1\"\n\
         [[routes]]\nid = \"a\"\npath = \"/a/{x}/\"\nupstream = \"app\"\nmethods = [\"get\", \"GET\", \"post\"]\n\
         [[routes]]\nid = \"b\"\npath = \"/a/{y}\"\nupstream = \"app\"\nmethods = [\"PUT\"]\nallow_wildcard = true\n\
         [[routes]]\nid = \"root\"\npath = \"/\"\nupstream = \"app\"\ntier = \"anything\"\n",
    )
    .unwrap();
    assert_eq!(c.routes[0].path, "/a/{x}");
    assert_eq!(
        c.routes[0].methods,
        vec![http::Method::GET, http::Method::POST]
    );
    assert!(c.routes[1].allow_wildcard);
    assert_eq!(c.routes[2].path, "/");
    assert!(c.routes[2].methods.is_empty());
    // A non-standard (but valid) method is accepted with a warning and a suggestion.
    let c = load(&dev("methods = [\"GETT\"]\n")).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("routes[0].methods[0]") && w.contains("did you mean `GET`")),
        "{:?}",
        c.warnings
    );

    // Zero routes: allowed, with a warning.
    let c = load("profile = \"dev\"\n").unwrap();
    assert!(c.warnings.iter().any(|w| w.contains("no routes")));
    // routes must be an array of tables.
    assert!(
        diag(&errors("profile = \"dev\"\nroutes = 1\n"), "routes")
            .message
            .contains("[[routes]]")
    );
}

// ---- headers --------------------------------------------------------------------------

#[test]
fn header_values_and_disabling() {
    let c = load(&prod(
        "",
        "[headers]\ncontent_security_policy = \"\"\nreferrer_policy = \"same-origin\"\npermissions_policy = \"\"\n",
    ))
    .unwrap();
    assert_eq!(c.headers.content_security_policy, None);
    assert_eq!(c.headers.permissions_policy, None);
    assert_eq!(c.headers.referrer_policy.as_deref(), Some("same-origin"));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("content_security_policy")),
        "{:?}",
        c.warnings
    );
    assert!(
        !c.warnings.iter().any(|w| w.contains("permissions_policy")),
        "{:?}",
        c.warnings
    );
    // Dev: no warning for disabling.
    let c = load(&dev("[headers]\nx_frame_options = \"\"\n")).unwrap();
    assert!(!c.warnings.iter().any(|w| w.contains("x_frame_options")));

    let e = errors(&dev(
        "[headers]\nx_frame_options = \"DENY\\r\\nSet-Cookie: a=b\"\nreferrer_policy = \"caf\u{e9}\"\nstrict_transport_security = \" max-age=1\"\n",
    ));
    assert!(
        diag(&e, "headers.x_frame_options").message.contains("0x0d"),
        "{e}"
    );
    diag(&e, "headers.referrer_policy");
    assert!(
        diag(&e, "headers.strict_transport_security")
            .message
            .contains("whitespace")
    );
}

// ---- later sections -------------------------------------------------------------------

#[test]
fn later_section_values() {
    let e = load_env(
        &dev(
            "[rate_limit]\nbackend = \"redis\"\non_backend_error = \"maybe\"\n[audit]\ndir = \"/abs\"\n\
             retention = { hot_days = 30, warm_days = 7 }\n[signing]\nprovider = \"kms\"\n[crypto]\nkek = \"env:KEK\"\n\
             [store]\nurl = \"mysql://x\"\n[auth.jwt]\nallowed_algs = [\"none\"]\njwks_backoff_ms = 10\njwks_max_backoff_ms = 5\n",
        ),
        &[("KEK", "too short")],
    )
    .unwrap_err();
    assert_eq!(diag(&e, "rate_limit.redis_url").code, "missing-key");
    assert!(
        diag(&e, "rate_limit.on_backend_error")
            .message
            .contains("valid: deny, allow")
    );
    assert!(diag(&e, "audit.dir").message.contains("relative"));
    assert!(diag(&e, "audit.retention").message.contains("hot_days"));
    diag(&e, "signing.provider");
    assert!(diag(&e, "crypto.kek").message.contains("32 bytes"));
    diag(&e, "store.url");
    diag(&e, "auth.jwt.allowed_algs[0]");
    diag(&e, "auth.jwt.jwks_backoff_ms");
}

// ---- route scopes (authorization) -------------------------------------------------------

#[test]
fn prod_refuses_a_non_public_route_without_scopes() {
    let text = prod(
        "",
        "\n[[routes]]\nid = \"open\"\npath = \"/open\"\nupstream = \"app\"\nmethods = [\"GET\"]\n",
    );
    let e = errors(&text);
    let d = diag(&e, "routes[1]");
    assert_eq!(d.code, "profile");
    assert_eq!(d.file, "cfg.toml");
    // Points at the route's `[[routes]]` header.
    let line = text.lines().position(|l| l == "id = \"open\"").unwrap();
    assert_eq!(text.lines().nth(line - 1), Some("[[routes]]"));
    assert_eq!(d.line, Some(line), "{d}");
    assert!(d.message.contains("any_scopes"), "{d}");
    // any_scopes alone, or public, satisfies it; dev only needs authentication.
    load(&prod("", "\n[[routes]]\nid = \"open\"\npath = \"/open\"\nupstream = \"app\"\nany_scopes = [\"a\", \"b\"]\n")).unwrap();
    load(&prod(
        "",
        "\n[[routes]]\nid = \"open\"\npath = \"/open\"\nupstream = \"app\"\npublic = true\n",
    ))
    .unwrap();
    load(&dev(
        "\n[[routes]]\nid = \"open\"\npath = \"/open\"\nupstream = \"app\"\n",
    ))
    .unwrap();
}

#[test]
fn any_scopes_is_a_list_of_scopes() {
    let c = load(&dev("any_scopes = [\"metrics\", \"audit\"]\n")).unwrap();
    assert_eq!(c.routes[0].any_scopes, ["metrics", "audit"]);
    assert!(c.routes[0].scopes.is_empty());
    let e = errors(&dev("any_scopes = [\"has space\"]\n"));
    diag(&e, "routes[0].any_scopes[0]");
    let e = errors(&dev("any_scopes = \"metrics\"\n"));
    diag(&e, "routes[0].any_scopes");
    let e = errors(&dev("public = true\nany_scopes = [\"metrics\"]\n"));
    assert!(diag(&e, "routes[0].any_scopes").message.contains("public"));
}
