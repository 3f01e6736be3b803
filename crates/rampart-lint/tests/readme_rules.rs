//! The README's rule table names every rule with its id, severity and title as the
//! linter has them.

#![allow(clippy::unwrap_used)]

#[test]
fn readme_rule_table_matches_the_rules() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    for r in rampart_lint::rules::ALL {
        let row = format!(
            "| `{}` | {} | {} |",
            r.id,
            r.severity,
            r.title.replace('|', "\\|")
        );
        assert!(
            readme.contains(&row),
            "README lacks the row starting `{row}`"
        );
    }
}
