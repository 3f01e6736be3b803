//! The README's configuration reference is checked against the code: the block is loaded
//! by the real loader, which rejects unknown keys and invalid values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[test]
fn readme_config_reference_loads() {
    let readme = include_str!("../../../README.md");
    let start =
        readme.find("```toml reference\n").expect("reference block") + "```toml reference\n".len();
    let len = readme[start..].find("```").expect("end of block");
    let block = &readme[start..start + len];
    let cfg = rampart_config::load_from_strs(&[("README.md", block)], &[])
        .unwrap_or_else(|e| panic!("README reference does not load:\n{e}"));
    assert_eq!(cfg.routes.len(), 3);
    assert_eq!(cfg.server.max_header_bytes, 16384);
    // The defaults the README shows are the code's defaults.
    let minimal = rampart_config::load_from_strs(
        &[(
            "min.toml",
            "profile = \"dev\"\n[upstreams.app]\nurl = \"http://127.0.0.1:3000\"\n",
        )],
        &[],
    )
    .unwrap();
    let (a, b) = (&cfg.server, &minimal.server);
    assert_eq!(a.listen, b.listen);
    assert_eq!(a.admin_listen, b.admin_listen);
    assert_eq!(a.max_header_bytes, b.max_header_bytes);
    assert_eq!(a.header_read_timeout, b.header_read_timeout);
    assert_eq!(a.max_header_count, b.max_header_count);
    assert_eq!(a.keepalive_idle_timeout, b.keepalive_idle_timeout);
    assert_eq!(a.client_body_idle_timeout, b.client_body_idle_timeout);
    assert_eq!(a.upstream_body_idle_timeout, b.upstream_body_idle_timeout);
    assert_eq!(a.client_write_stall_timeout, b.client_write_stall_timeout);
    assert_eq!(a.h2_idle_timeout, b.h2_idle_timeout);
    assert_eq!(a.request_timeout, b.request_timeout);
    assert_eq!(a.max_connections, b.max_connections);
    assert_eq!(a.max_body_bytes, b.max_body_bytes);
    assert_eq!(a.upstream_connect_timeout, b.upstream_connect_timeout);
    assert_eq!(a.drain_timeout, b.drain_timeout);
    assert_eq!(a.idle_timeout, b.idle_timeout);
    assert_eq!(a.access_log, b.access_log);
    let (h, d) = (&cfg.headers, &minimal.headers);
    assert_eq!(h.content_security_policy, d.content_security_policy);
    assert_eq!(h.strict_transport_security, d.strict_transport_security);
    assert_eq!(h.x_frame_options, d.x_frame_options);
    assert_eq!(h.x_content_type_options, d.x_content_type_options);
    assert_eq!(h.referrer_policy, d.referrer_policy);
    assert_eq!(h.permissions_policy, d.permissions_policy);
    assert_eq!(h.cross_origin_opener_policy, d.cross_origin_opener_policy);
}
