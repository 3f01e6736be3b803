//! A route's `cors`, `csrf` and `identity_assertion` keys: what loads, and what is
//! refused with a message that says what to write instead.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;

#[test]
fn cors_loads_with_defaults_and_lower_cases_headers() {
    let c = load(&dev("methods = [\"GET\", \"POST\"]\n\
         cors = { allowed_origins = [\"https://app.example.com\", \"http://localhost:3000\"], \
         allowed_methods = [\"post\"], allowed_headers = [\"X-CSRF-Token\", \"content-type\"], \
         allow_credentials = true, max_age_s = 600 }\n\
         csrf = { cookie = \"__Host-csrf\", header = \"X-CSRF-Token\" }\n\
         identity_assertion = true\n"))
    .unwrap();
    let r = &c.routes[0];
    let cors = r.cors.as_ref().unwrap();
    assert_eq!(
        cors.allowed_origins,
        ["https://app.example.com", "http://localhost:3000"]
    );
    assert!(!cors.any_origin);
    assert_eq!(cors.allowed_methods, [http::Method::POST]);
    assert_eq!(cors.allowed_headers, ["x-csrf-token", "content-type"]);
    assert!(cors.allow_credentials);
    assert_eq!(cors.max_age_s, Some(600));
    let csrf = r.csrf.as_ref().unwrap();
    assert_eq!(csrf.cookie, "__Host-csrf");
    assert_eq!(csrf.header, "x-csrf-token");
    assert!(r.identity_assertion);

    let c = load(&dev("cors = { allowed_origins = [\"*\"] }\n")).unwrap();
    let cors = c.routes[0].cors.as_ref().unwrap();
    assert!(cors.any_origin && cors.allowed_origins.is_empty());
    assert!(cors.allowed_methods.is_empty() && !cors.allow_credentials);
    assert!(!c.routes[0].identity_assertion && c.routes[0].csrf.is_none());
}

#[test]
fn cors_refusals() {
    let e = errors(&dev(
        "cors = { allowed_origins = [\"*\"], allow_credentials = true }\n",
    ));
    let d = diag(&e, "routes[0].cors.allowed_origins[0]");
    assert!(d.message.contains("allow_credentials"), "{e}");

    let e = errors(&dev("cors = { allowed_origins = [\"null\"] }\n"));
    assert!(
        diag(&e, "routes[0].cors.allowed_origins[0]")
            .message
            .contains("null"),
        "{e}"
    );
    for bad in [
        "https://app.example.com/",
        "https://App.example.com",
        "https://app.example.com:443",
        "app.example.com",
    ] {
        let e = errors(&dev(&format!(
            "cors = {{ allowed_origins = [\"{bad}\"] }}\n"
        )));
        diag(&e, "routes[0].cors.allowed_origins[0]");
    }
    let e = errors(&dev("cors = { allowed_origins = [] }\n"));
    diag(&e, "routes[0].cors.allowed_origins");
    let e = errors(&dev("cors = { allowed_methods = [\"GET\"] }\n"));
    assert_eq!(
        diag(&e, "routes[0].cors.allowed_origins").code,
        "missing-key"
    );
    // A method the route itself refuses would be a promise the gateway breaks.
    let e = errors(&dev(
        "methods = [\"GET\"]\ncors = { allowed_origins = [\"https://a.example\"], allowed_methods = [\"DELETE\"] }\n",
    ));
    assert!(
        diag(&e, "routes[0].cors.allowed_methods[0]")
            .message
            .contains("does not accept"),
        "{e}"
    );
    let e = errors(&dev(
        "cors = { allowed_origins = [\"https://a.example\"], allowed_headers = [\"*\"], max_age_s = 999999, origins = [] }\n",
    ));
    diag(&e, "routes[0].cors.allowed_headers[0]");
    assert_eq!(diag(&e, "routes[0].cors.max_age_s").code, "out-of-range");
    assert_eq!(diag(&e, "routes[0].cors.origins").code, "unknown-key");
}

#[test]
fn csrf_and_identity_assertion_refusals() {
    let e = errors(&dev(
        "csrf = { cookie = \"csrf\", header = \"x-csrf-token\" }\n",
    ));
    assert!(
        diag(&e, "routes[0].csrf.cookie")
            .message
            .contains("__Host-"),
        "{e}"
    );
    let e = errors(&dev(
        "csrf = { cookie = \"__Host-a;b\", header = \"cookie\" }\n",
    ));
    diag(&e, "routes[0].csrf.cookie");
    diag(&e, "routes[0].csrf.header");
    let e = errors(&dev("csrf = { cookie = \"__Host-csrf\" }\n"));
    assert_eq!(diag(&e, "routes[0].csrf.header").code, "missing-key");
    let e = errors(&dev("public = true\nidentity_assertion = true\n"));
    assert!(
        diag(&e, "routes[0].identity_assertion")
            .message
            .contains("public"),
        "{e}"
    );
}
