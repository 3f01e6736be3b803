//! `rampart revoke`: add a token id, subject, client certificate or API key to the
//! revocation list. Running gateways refuse it within 5 s (at once through Redis when
//! `[redis] url` is set).
//!
//! Exit codes: 0 recorded; 1 the store failed or the API key does not exist; 2 usage or
//! configuration.

use clap::{ArgGroup, Args};
use rampart_store::{NewRevocation, RevocationKind, Revocations, Store, when};

use crate::apikey::{ConfigArgs, fail, load_config, note_publish, runtime};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["jti", "subject", "cert_fp", "apikey"])))]
pub struct RevokeArgs {
    #[command(flatten)]
    cfg: ConfigArgs,
    /// A JWT id (`jti` claim).
    #[arg(long, value_name = "ID")]
    jti: Option<String>,
    /// A subject: every credential of that identity.
    #[arg(long, value_name = "S")]
    subject: Option<String>,
    /// A client certificate: SHA-256 of its DER, hex (colons and a SHA256: prefix accepted).
    #[arg(long = "cert-fp", value_name = "FP")]
    cert_fp: Option<String>,
    /// An API key id (the 12 characters after `rpk_`); also marks the key revoked.
    #[arg(long, value_name = "ID")]
    apikey: Option<String>,
    /// When the entry lapses: RFC 3339 or a duration from now (30d, 12h). Set it to the
    /// revoked credential's expiry. Default: never (an API key's: the key's expiry).
    #[arg(long, value_name = "RFC3339|DURATION")]
    until: Option<String>,
    /// Why (kept with the entry, shown by nothing public).
    #[arg(long)]
    reason: Option<String>,
}

pub fn run(a: RevokeArgs) -> u8 {
    let until = match a
        .until
        .as_deref()
        .map(|s| when::parse_until(s, when::now_unix()))
    {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(m)) => {
            eprintln!("error: --until {m}");
            return 2;
        }
    };
    let (kind, value) = match (&a.jti, &a.subject, &a.cert_fp, &a.apikey) {
        (Some(v), _, _, _) => (RevocationKind::Jti, v.clone()),
        (_, Some(v), _, _) => (RevocationKind::Subject, v.clone()),
        (_, _, Some(v), _) => (RevocationKind::Cert, v.clone()),
        (_, _, _, Some(v)) => (RevocationKind::ApiKey, v.clone()),
        _ => {
            eprintln!("error: name what to revoke: --jti, --subject, --cert-fp or --apikey");
            return 2;
        }
    };
    let cfg = match load_config(&a.cfg.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    rt.block_on(async {
        let store = match Store::open(&cfg).await {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        let code = revoke(&store, kind, value, until, a.reason).await;
        store.close().await;
        code
    })
}

async fn revoke(
    store: &Store,
    kind: RevocationKind,
    value: String,
    until: Option<i64>,
    reason: Option<String>,
) -> u8 {
    let revs = Revocations::new(store.clone());
    if kind == RevocationKind::ApiKey {
        match revs.revoke_api_key(&value).await {
            Ok(Some((_, published))) => note_publish(published.as_ref()),
            Ok(None) => {
                eprintln!("error: no API key with id `{}`", value.escape_debug());
                return 1;
            }
            Err(e) => return fail(&e),
        }
        // The entry already lapses with the key; an explicit --until or reason is added
        // on top (an entry is never shortened).
        if until.is_none() && reason.is_none() {
            println!("revoked apikey {value}");
            return 0;
        }
    }
    match revs
        .add_and_publish(NewRevocation {
            kind,
            value,
            until,
            reason,
        })
        .await
    {
        Ok((rev, published)) => {
            note_publish(published.as_ref());
            println!(
                "revoked {} {} until {}",
                rev.kind.as_str(),
                rev.value,
                rev.until.map_or_else(|| "never".into(), when::rfc3339)
            );
            0
        }
        Err(e) => fail(&e),
    }
}
