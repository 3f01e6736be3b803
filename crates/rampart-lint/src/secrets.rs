//! Recognisable credential formats in literal values. Only formats with a distinctive
//! shape are matched (vendor prefixes, PEM armour), so a finding is almost never a false
//! alarm; a value that is a `${VAR}` reference is never a secret.

/// rampart's own API-key prefix: keys minted by `rampart apikey create` start with it
/// so that secret scanners (this one included) find leaked keys. Kept equal to
/// `rampart_config::API_KEY_PREFIX` (a test in the `rampart` crate checks it).
pub const RAMPART_API_KEY_PREFIX: &str = "rpk_";

/// How many characters of a detected secret a message may show.
pub const SHOWN_PREFIX: usize = 4;

/// A detected credential: what it looks like and the few characters that may be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub kind: &'static str,
    pub shown: String,
}

fn run_len(s: &str, ok: impl Fn(char) -> bool) -> usize {
    s.chars().take_while(|c| ok(*c)).count()
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Each pattern: a prefix, the character class and minimum length of what follows.
type Pattern = (&'static str, &'static str, fn(char) -> bool, usize);

const PATTERNS: &[Pattern] = &[
    ("ghp_", "GitHub personal access token", alnum, 36),
    ("gho_", "GitHub OAuth token", alnum, 36),
    ("ghu_", "GitHub user-to-server token", alnum, 36),
    ("ghs_", "GitHub server-to-server token", alnum, 36),
    ("ghr_", "GitHub refresh token", alnum, 36),
    ("github_pat_", "GitHub fine-grained token", token_char, 40),
    ("glpat-", "GitLab personal access token", token_char, 20),
    ("xoxb-", "Slack bot token", token_char, 10),
    ("xoxp-", "Slack user token", token_char, 10),
    ("xoxa-", "Slack app token", token_char, 10),
    ("xoxr-", "Slack refresh token", token_char, 10),
    ("xoxs-", "Slack session token", token_char, 10),
    ("xapp-", "Slack app-level token", token_char, 10),
    (
        "https://hooks.slack.com/services/",
        "Slack webhook URL",
        slack_hook,
        20,
    ),
    ("sk_live_", "Stripe secret key", alnum, 20),
    ("rk_live_", "Stripe restricted key", alnum, 20),
    ("AIza", "Google API key", token_char, 35),
    ("npm_", "npm access token", alnum, 36),
    ("pypi-", "PyPI API token", token_char, 50),
    (RAMPART_API_KEY_PREFIX, "rampart API key", token_char, 20),
];

fn slack_hook(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '/'
}

fn aws_key_id(s: &str) -> bool {
    [
        "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA",
    ]
    .iter()
    .any(|p| s.starts_with(p))
        && run_len(s.get(4..).unwrap_or(""), |c| {
            c.is_ascii_uppercase() || c.is_ascii_digit()
        }) >= 16
}

fn shown(s: &str) -> String {
    s.chars().take(SHOWN_PREFIX).collect()
}

/// The first credential found in `value`, if any.
pub fn detect(value: &str) -> Option<Detected> {
    if value.contains("PRIVATE KEY-----") && value.contains("-----BEGIN") {
        return Some(Detected {
            kind: "PEM private key",
            shown: "----".into(),
        });
    }
    // Candidate starts: the value's start and every position after a non-token
    // character (`KEY=ghp_…`, `Bearer xoxb-…`, `"AKIA…"`).
    let mut prev_boundary = true;
    for (i, c) in value.char_indices() {
        if prev_boundary {
            let rest = value.get(i..).unwrap_or("");
            if aws_key_id(rest) {
                return Some(Detected {
                    kind: "AWS access key id",
                    shown: shown(rest),
                });
            }
            for (prefix, kind, class, min) in PATTERNS {
                if let Some(tail) = rest.strip_prefix(prefix)
                    && run_len(tail, class) >= *min
                {
                    return Some(Detected {
                        kind,
                        shown: shown(rest),
                    });
                }
            }
        }
        prev_boundary = !c.is_ascii_alphanumeric();
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn formats() {
        let aws = detect("AKIAIOSFODNN7EXAMPLE").unwrap();
        assert_eq!(aws.kind, "AWS access key id");
        assert_eq!(aws.shown, "AKIA");
        assert!(detect(&format!("token ghp_{}", "a".repeat(36))).is_some());
        assert!(detect(&format!("ghp_{}", "a".repeat(20))).is_none());
        assert!(detect("xoxb-123456789012-abcdefghij").is_some());
        assert!(detect("-----BEGIN RSA PRIVATE KEY-----\nMIIE").is_some());
        assert!(detect(&format!("rpk_{}", "Q".repeat(32))).is_some());
        assert!(detect("${GITHUB_TOKEN}").is_none());
        assert!(detect("zookeeper:2181").is_none());
        assert!(detect("hello-AKIAIOSFODNN7EXAMPLE").is_some());
        assert!(detect("XAKIAIOSFODNN7EXAMPLE").is_none());
    }

    proptest::proptest! {
        #[test]
        fn never_shows_more_than_the_prefix(s in ".{0,80}") {
            if let Some(d) = detect(&s) {
                proptest::prop_assert!(d.shown.chars().count() <= SHOWN_PREFIX);
            }
        }
    }
}
