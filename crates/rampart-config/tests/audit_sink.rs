//! `audit.postgres_url` and `audit.node_id` (the audit PostgreSQL sink).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;

#[test]
fn postgres_url_is_a_reference_or_url_and_needs_a_node_id() {
    let url = "postgres://audit:pw@db.internal/rampart";
    let c = load_env(
        &dev("[audit]\npostgres_url = \"env:ADB\"\nnode_id = \"gw-1.eu_west\"\n"),
        &[("ADB", url)],
    )
    .unwrap();
    let a = c.later.audit.unwrap();
    assert_eq!(a.postgres_url.as_ref().unwrap().expose_str(), Some(url));
    assert_eq!(format!("{:?}", a.postgres_url), "Some([redacted])");
    assert!(!format!("{a:?}").contains("pw@"), "{a:?}");
    assert_eq!(a.node_id.as_deref(), Some("gw-1.eu_west"));

    let c = load(&dev(&format!(
        "[audit]\npostgres_url = \"{url}\"\nnode_id = \"n\"\n"
    )))
    .unwrap();
    assert!(c.later.audit.unwrap().postgres_url.is_some());

    // Without a node id two gateways could fork one chain: refused.
    let e = load(&dev(&format!("[audit]\npostgres_url = \"{url}\"\n"))).unwrap_err();
    assert!(
        diag(&e, "audit.postgres_url").message.contains("node_id"),
        "{e}"
    );
    // Another scheme, directly or behind a reference; the value is never echoed.
    let e = load(&dev(
        "[audit]\npostgres_url = \"mysql://x:pw@h/db\"\nnode_id = \"n\"\n",
    ))
    .unwrap_err();
    assert!(
        diag(&e, "audit.postgres_url")
            .message
            .contains("postgres://")
    );
    let e = load_env(
        &dev("[audit]\npostgres_url = \"env:ADB\"\nnode_id = \"n\"\n"),
        &[("ADB", "mysql://x:secretpw@h/db")],
    )
    .unwrap_err();
    let d = diag(&e, "audit.postgres_url");
    assert!(!d.message.contains("secretpw"), "{d:?}");
    for bad in ["", "a b", "x/y", &"n".repeat(65)] {
        let e = load(&dev(&format!(
            "[audit]\npostgres_url = \"{url}\"\nnode_id = \"{bad}\"\n"
        )))
        .unwrap_err();
        assert!(
            diag(&e, "audit.node_id").message.contains("1 to 64"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn sync_interval_ms_is_optional_and_bounded() {
    let a = load(&dev("[audit]\n")).unwrap().later.audit.unwrap();
    assert_eq!(a.sync_interval_ms, None);
    let a = load(&dev("[audit]\nsync_interval_ms = 5\n"))
        .unwrap()
        .later
        .audit
        .unwrap();
    assert_eq!(a.sync_interval_ms, Some(5));
    let e = load(&dev("[audit]\nsync_interval_ms = 1001\n")).unwrap_err();
    assert!(format!("{e}").contains("audit.sync_interval_ms"), "{e}");
}
