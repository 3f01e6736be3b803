//! Dockerfile rules: non-root final stage, pinned bases, no remote `ADD`, no secrets in
//! `ENV`/`ARG`, multi-stage builds on a minimal final base.

use std::collections::BTreeMap;

use crate::Sink;
use crate::dockerfile::{Instruction, split_flags};
use crate::image::{self, Pin};
use crate::rules::{
    FAT_BASE, IMAGE_LATEST, IMAGE_TAG, LOW_UID, REMOTE_ADD, RUN_AS_ROOT, SECRET, SINGLE_STAGE,
};
use crate::secrets;
use crate::yaml::Pos;

struct Stage {
    pos: Pos,
    /// The base image as written, `ARG` defaults substituted.
    image: String,
    name: Option<String>,
    /// Index of the earlier stage this one is built `FROM`.
    base_stage: Option<usize>,
    user: Option<(String, Pos)>,
}

fn pos(i: &Instruction) -> Pos {
    Pos {
        line: i.line,
        col: i.col,
    }
}

/// `$NAME` and `${NAME}` replaced by the global `ARG` defaults that are known.
fn substitute(s: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = s.to_owned();
    for (k, v) in args {
        out = out.replace(&format!("${{{k}}}"), v);
        out = out.replace(&format!("${k}"), v);
    }
    out
}

/// A user that is root: `root`, `0`, with or without a group.
fn is_root_user(u: &str) -> bool {
    let user = u.split(':').next().unwrap_or(u).trim();
    user == "root" || user.parse::<u64>() == Ok(0)
}

fn low_uid(u: &str) -> Option<u64> {
    let user = u.split(':').next().unwrap_or(u).trim();
    user.parse::<u64>().ok().filter(|n| *n > 0 && *n < 10_000)
}

fn is_remote(src: &str) -> bool {
    let s = src.to_ascii_lowercase();
    s.starts_with("http://")
        || s.starts_with("https://")
        || s.starts_with("git@")
        || s.starts_with("git://")
        || s.starts_with("ssh://")
}

pub(crate) fn check(ins: &[Instruction], sink: &mut Sink) {
    let mut global_args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for i in ins {
        match i.keyword.as_str() {
            "ARG" | "ENV" => {
                if i.keyword == "ARG"
                    && stages.is_empty()
                    && let Some((k, v)) = i.args.split_once('=')
                {
                    global_args.insert(k.trim().to_owned(), v.trim().trim_matches('"').to_owned());
                }
                if let Some(d) = secrets::detect(&i.args) {
                    sink.push(
                        &SECRET,
                        pos(i),
                        format!(
                            "{} writes a {} (`{}…`) into the image",
                            i.keyword, d.kind, d.shown
                        ),
                    );
                }
            }
            "FROM" => {
                let (_, rest) = split_flags(&i.args);
                let raw = rest.first().copied().unwrap_or("");
                let name = match rest.as_slice() {
                    [_, kw, n, ..] if kw.eq_ignore_ascii_case("as") => Some(n.to_ascii_lowercase()),
                    _ => None,
                };
                let image = substitute(raw, &global_args);
                let base_stage = stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(image.to_ascii_lowercase().as_str()));
                if base_stage.is_none() && !image.eq_ignore_ascii_case("scratch") {
                    match image::pin(&image) {
                        Pin::Latest => sink.push(
                            &IMAGE_LATEST,
                            pos(i),
                            format!("base image `{raw}` has no tag or uses `latest`"),
                        ),
                        Pin::Tag => sink.push(
                            &IMAGE_TAG,
                            pos(i),
                            format!("base image `{raw}` is pinned by tag only, not by digest"),
                        ),
                        Pin::Digest | Pin::Unknown => {}
                    }
                }
                stages.push(Stage {
                    pos: pos(i),
                    image,
                    name,
                    base_stage,
                    user: None,
                });
            }
            "USER" => {
                if let Some(s) = stages.last_mut() {
                    s.user = Some((i.args.trim().to_owned(), pos(i)));
                }
            }
            "ADD" => {
                let (flags, rest) = split_flags(&i.args);
                let checksum = flags.iter().any(|f| f.starts_with("--checksum="));
                let sources = rest.split_last().map(|(_, s)| s).unwrap_or_default();
                if !checksum && let Some(src) = sources.iter().find(|s| is_remote(s)) {
                    let shown: String = src.chars().take(80).collect();
                    sink.push(
                        &REMOTE_ADD,
                        pos(i),
                        format!("ADD downloads `{shown}` without an integrity check"),
                    );
                }
            }
            _ => {}
        }
    }
    let Some(last) = stages.last() else {
        return;
    };
    // The user in effect at the end of the final stage: its own USER, else the one of
    // the earlier stage it is built from.
    let mut user = None;
    let mut cur = Some(stages.len() - 1);
    let mut root_image = last.image.clone();
    let mut hops = 0;
    while let Some(idx) = cur {
        let Some(s) = stages.get(idx) else { break };
        if user.is_none() {
            user.clone_from(&s.user);
        }
        root_image.clone_from(&s.image);
        cur = s.base_stage.filter(|b| *b < idx);
        hops += 1;
        if hops > stages.len() {
            break;
        }
    }
    match &user {
        None => sink.push(
            &RUN_AS_ROOT,
            last.pos,
            "the final stage sets no USER: the container runs as root",
        ),
        // A user from a build argument: not decidable here.
        Some((u, _)) if u.contains('$') => {}
        Some((u, p)) if is_root_user(u) => {
            sink.push(
                &RUN_AS_ROOT,
                *p,
                format!("USER {u}: the container runs as root"),
            );
        }
        Some((u, p)) => {
            if let Some(n) = low_uid(u) {
                sink.push(&LOW_UID, *p, format!("USER {n} is below 10000"));
            }
        }
    }
    if stages.len() == 1 {
        sink.push(
            &SINGLE_STAGE,
            last.pos,
            "single-stage build: build tools ship in the runtime image",
        );
    }
    if !root_image.contains('$') && !image::is_minimal_base(&root_image) {
        sink.push(
            &FAT_BASE,
            last.pos,
            format!("final stage is based on `{root_image}`, not a minimal image"),
        );
    }
}
