//! `auth.api_key.pepper`, `[redis] url` and `store.url` references (the credential store).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;

const PEPPER: &str = "0123456789abcdef0123456789abcdef-pepper";

#[test]
fn pepper_is_a_reference_of_at_least_32_bytes() {
    let c = load_env(
        &prod(
            "",
            "[auth]\nmodes = [\"api_key\"]\n[auth.api_key]\npepper = \"env:P\"\n",
        ),
        &[("P", PEPPER)],
    )
    .unwrap();
    let p = c.later.auth.unwrap().api_key.unwrap().pepper.unwrap();
    assert_eq!(p.expose(), PEPPER.as_bytes());
    assert_eq!(format!("{p:?}"), "[redacted]");

    let e = load_env(
        &dev("[auth.api_key]\npepper = \"env:P\"\n"),
        &[("P", "short")],
    )
    .unwrap_err();
    let d = diag(&e, "auth.api_key.pepper");
    assert!(d.message.contains("at least 32 bytes"), "{d:?}");
    assert!(
        !d.message.contains("short"),
        "the value is never echoed: {d:?}"
    );

    // Written into the file: refused in every profile.
    let e = errors(&dev(&format!("[auth.api_key]\npepper = \"{PEPPER}\"\n")));
    assert_eq!(diag(&e, "auth.api_key.pepper").code, "secret-literal");
    assert!(!e.to_string().contains(PEPPER));
}

#[test]
fn prod_requires_a_pepper_for_api_key_mode() {
    let e = errors(&prod("", "[auth]\nmodes = [\"jwt\", \"api_key\"]\n"));
    assert_eq!(diag(&e, "auth.api_key.pepper").code, "missing-key");
    // Without api_key among the modes, no pepper is needed.
    load(&prod("", "[auth]\nmodes = [\"jwt\"]\n")).unwrap();
    // Dev: a warning, not an error.
    let c = load(&dev("[auth]\nmodes = [\"api_key\"]\n")).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("auth.api_key.pepper")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn redis_url_forms() {
    let c = load(&dev("[redis]\nurl = \"redis://127.0.0.1:6379\"\n")).unwrap();
    let u = c.later.redis.unwrap().url.unwrap();
    assert_eq!(u.expose_str(), Some("redis://127.0.0.1:6379"));
    assert_eq!(format!("{u:?}"), "[redacted]");

    let c = load_env(
        &dev("[redis]\nurl = \"env:R\"\n"),
        &[("R", "rediss://:hunter2@cache.internal:6380")],
    )
    .unwrap();
    assert_eq!(
        c.later.redis.unwrap().url.unwrap().expose_str(),
        Some("rediss://:hunter2@cache.internal:6380")
    );

    let e = errors(&dev("[redis]\nurl = \"http://user:hunter2@x\"\n"));
    let d = diag(&e, "redis.url");
    assert!(d.message.contains("redis://"), "{d:?}");
    assert!(!e.to_string().contains("hunter2"), "{e}");

    let e = load_env(&dev("[redis]\nurl = \"env:R\"\n"), &[("R", "mysql://x")]).unwrap_err();
    assert!(diag(&e, "redis.url").message.contains("env:R"));

    let e = errors(&dev("[redis]\nulr = \"redis://127.0.0.1\"\n"));
    let d = diag(&e, "redis.ulr");
    assert_eq!(d.code, "unknown-key");
    assert!(d.message.contains("url"), "{d:?}");

    // Absent section: no Redis.
    assert!(load(&dev("")).unwrap().later.redis.is_none());
}

#[test]
fn store_url_may_be_a_reference() {
    let c = load(&dev("[store]\nurl = \"sqlite://rampart.db\"\n")).unwrap();
    let s = c.later.store.unwrap();
    assert_eq!(s.resolved_url(), Some("sqlite://rampart.db"));
    assert!(s.url_secret.is_none());

    let c = load_env(
        &dev("[store]\nurl = \"env:DB\"\n"),
        &[("DB", "postgres://app:pw@db.internal/rampart")],
    )
    .unwrap();
    let s = c.later.store.unwrap();
    assert_eq!(s.url.as_deref(), Some("env:DB"));
    assert_eq!(
        s.resolved_url(),
        Some("postgres://app:pw@db.internal/rampart")
    );

    let e = load_env(&dev("[store]\nurl = \"env:DB\"\n"), &[("DB", "mysql://x")]).unwrap_err();
    assert!(diag(&e, "store.url").message.contains("sqlite://"));
}

#[test]
fn pepper_file_is_rechecked_by_check() {
    let d = scratch();
    let f = d.path().join("pepper");
    write(&f, PEPPER, 0o600);
    let text = dev(&format!(
        "[auth.api_key]\npepper = \"file:{}\"\n",
        f.display()
    ));
    let c = load(&text).unwrap();
    assert_eq!(
        c.later
            .auth
            .as_ref()
            .unwrap()
            .api_key
            .as_ref()
            .unwrap()
            .pepper
            .as_ref()
            .unwrap()
            .expose(),
        PEPPER.as_bytes()
    );
    let ok = rampart_config::check_config(&c);
    assert!(
        !ok.iter().any(|x| x.message.contains("auth.api_key.pepper")),
        "{ok:?}"
    );
    // The file became readable after the load: `check` says so (exit 1 class).
    write(&f, PEPPER, 0o644);
    let later = rampart_config::check_config(&c);
    let hit = later
        .iter()
        .find(|x| x.message.contains("auth.api_key.pepper"))
        .unwrap();
    assert_eq!(hit.code, "secret-file-mode");
    // And a fresh load refuses it.
    assert_eq!(
        diag(&errors(&text), "auth.api_key.pepper").code,
        "secret-file-mode"
    );
}

#[test]
fn rate_limit_redis_url_is_resolved_and_falls_back_to_redis_url() {
    // Its own URL, as a reference: resolved, never printed.
    let c = load_env(
        &dev("[rate_limit]\nbackend = \"redis\"\nredis_url = \"env:RL\"\n"),
        &[("RL", "redis://:hunter2@127.0.0.1:6380/1")],
    )
    .unwrap();
    let r = c.later.rate_limit.unwrap();
    let u = r.redis_url_secret.unwrap();
    assert_eq!(u.expose_str(), Some("redis://:hunter2@127.0.0.1:6380/1"));
    assert_eq!(format!("{u:?}"), "[redacted]");
    assert_eq!(r.redis_url.as_deref(), Some("env:RL"));

    // Absent: `[redis] url` is enough.
    let c = load(&dev(
        "[rate_limit]\nbackend = \"redis\"\n[redis]\nurl = \"redis://127.0.0.1:6379\"\n",
    ))
    .unwrap();
    assert!(c.later.rate_limit.unwrap().redis_url_secret.is_none());

    // Neither: refused, naming the key.
    let e = errors(&dev("[rate_limit]\nbackend = \"redis\"\n"));
    let d = diag(&e, "rate_limit.redis_url");
    assert_eq!(d.code, "missing-key");
    assert!(d.message.contains("[redis] url"), "{d:?}");

    // A reference to something that is not a Redis URL: refused without echoing it.
    let e = load_env(
        &dev("[rate_limit]\nbackend = \"redis\"\nredis_url = \"env:RL\"\n"),
        &[("RL", "http://user:hunter2@x")],
    )
    .unwrap_err();
    assert!(diag(&e, "rate_limit.redis_url").message.contains("env:RL"));
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn route_tiers_default_and_heavy_always_exist() {
    let route = |tier: &str| {
        format!(
            "[rate_limit]\n[[routes]]\nid = \"t\"\npath = \"/t\"\nupstream = \"app\"\ntier = \"{tier}\"\n"
        )
    };
    load(&dev(&route("heavy"))).unwrap();
    load(&dev(&route("default"))).unwrap();
    let e = errors(&dev(&route("hevy")));
    assert!(diag(&e, "routes[1].tier").message.contains("heavy"), "{e}");
}
