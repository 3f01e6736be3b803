//! Bakes the version, git commit, branch and build time into the binary for `/version`
//! and `rampart_build_info`, and the CycloneDX SBOM that `rampart sbom` prints.
//!
//! # Why the SBOM is made by `cargo metadata` here
//!
//! The SBOM must list what is linked into this binary, no more and no less. `cargo
//! metadata --offline --locked --filter-platform $TARGET` is cargo's own answer to that:
//! the resolved graph for the target being built, with each dependency edge's kind
//! (normal, build, dev) and each package's declared licence, read from the same
//! `Cargo.lock` and registry sources the build uses. Following only normal edges from
//! `rampart` gives the linked set (build scripts, proc-macro-free dev tools and test
//! crates are left out). The alternatives were weaker: reading `Cargo.lock` alone sees
//! neither edge kinds nor platforms nor licences, and reading registry manifests by path
//! guesses cargo's cache layout; the `cyclonedx-bom` crate is slow to build and would
//! add a dependency tree of its own to the binary. `--offline --locked` never touches
//! the network or changes the lock file. Checksums come from `Cargo.lock` (SHA-256 of the
//! `.crate` file as downloaded). If cargo metadata fails, the build still succeeds with a
//! warning, and `rampart sbom` says why it has no SBOM (exit 2) rather than printing an
//! incomplete one.

// `value["key"]` on a serde_json `Value` reads `Null` for a missing key or a non-object
// and never panics; the only writes (`c["scope"]`, `c["hashes"]`, …) go to objects made by
// `json!` a few lines above.
#![allow(clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// `name@version` → SHA-256 checksum, from the `[[package]]` entries of `Cargo.lock`.
fn lock_checksums(lock: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for block in lock.split("[[package]]") {
        let field = |k: &str| {
            block.lines().find_map(|l| {
                let v = l.strip_prefix(k)?.trim_start().strip_prefix('=')?;
                Some(v.trim().trim_matches('"').to_owned())
            })
        };
        if let (Some(n), Some(v), Some(c)) = (field("name"), field("version"), field("checksum")) {
            out.insert(format!("{n}@{v}"), c);
        }
    }
    out
}

fn purl(name: &str, version: &str) -> String {
    format!("pkg:cargo/{name}@{version}")
}

/// Cargo's licence field as an SPDX expression (`MIT/Apache-2.0` is the old spelling of
/// `MIT OR Apache-2.0`).
fn licences(pkg: &serde_json::Value) -> serde_json::Value {
    if let Some(l) = pkg["license"].as_str() {
        let expr = l.split('/').map(str::trim).collect::<Vec<_>>().join(" OR ");
        serde_json::json!([{ "expression": expr }])
    } else {
        let file = pkg["license_file"].as_str().unwrap_or("not declared");
        serde_json::json!([{ "license": { "name": format!("see {file}") } }])
    }
}

fn sbom(root: &Path, timestamp: &str) -> Result<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = std::env::var("TARGET").map_err(|e| format!("TARGET: {e}"))?;
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .args(["--filter-platform", &target, "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let sums = lock_checksums(&lock);
    let empty = Vec::new();
    let packages: BTreeMap<&str, &serde_json::Value> = meta["packages"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: BTreeMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let me = packages
        .iter()
        .find(|(_, p)| p["name"] == "rampart" && p["source"].is_null())
        .map(|(id, _)| *id)
        .ok_or("the rampart package is not in cargo metadata")?;
    // Optional dependencies a node's enabled features turn on. cargo metadata lists an
    // edge to every optional dependency the dependency resolver saw activated anywhere
    // (e.g. `ring` under rustls-webpki), so edges are filtered by the node's own
    // feature set, as the feature resolver (and `cargo tree`) does.
    let activated = |id: &str| -> BTreeSet<String> {
        let mut on = BTreeSet::new();
        let (Some(n), Some(p)) = (nodes.get(id), packages.get(id)) else {
            return on;
        };
        let table = &p["features"];
        for f in n["features"].as_array().unwrap_or(&empty) {
            let Some(f) = f.as_str() else { continue };
            match table[f].as_array() {
                Some(values) => {
                    for v in values.iter().filter_map(|v| v.as_str()) {
                        if let Some(d) = v.strip_prefix("dep:") {
                            on.insert(d.to_owned());
                        } else if let Some((d, _)) = v.split_once('/') {
                            if !d.ends_with('?') {
                                on.insert(d.to_owned());
                            }
                        } else {
                            on.insert(v.to_owned());
                        }
                    }
                }
                // An implicit feature named after an optional dependency.
                None => {
                    on.insert(f.to_owned());
                }
            }
        }
        on
    };
    let is_proc_macro = |id: &str| {
        packages
            .get(id)
            .and_then(|p| p["targets"].as_array())
            .is_some_and(|t| {
                t.iter().any(|t| {
                    t["kind"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k == "proc-macro"))
                })
            })
    };
    // Normal dependencies of a node (no dev or build edges, no inactive optional ones).
    let normal = |id: &str| -> Vec<String> {
        let on = activated(id);
        let declared = packages
            .get(id)
            .and_then(|p| p["dependencies"].as_array())
            .unwrap_or(&empty);
        nodes
            .get(id)
            .and_then(|n| n["deps"].as_array())
            .unwrap_or(&empty)
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k["kind"].is_null()))
            })
            .filter(|d| {
                let dep_name = packages
                    .get(d["pkg"].as_str().unwrap_or(""))
                    .and_then(|p| p["name"].as_str())
                    .unwrap_or("");
                // The declaration under its (possibly renamed) name.
                let decl = declared.iter().find(|x| {
                    x["kind"].is_null()
                        && (x["rename"].as_str() == Some(d["name"].as_str().unwrap_or(""))
                            || (x["rename"].is_null() && x["name"] == dep_name))
                });
                match decl {
                    Some(x) if x["optional"] == true => {
                        let key = x["rename"].as_str().unwrap_or(dep_name);
                        on.contains(key)
                    }
                    _ => true,
                }
            })
            .filter_map(|d| d["pkg"].as_str().map(str::to_owned))
            .collect()
    };
    // Linked: reachable from rampart without entering a proc-macro. Build-time only:
    // proc-macros and what only they use (`scope: excluded` in the SBOM).
    let closure = |through_macros: bool| {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut todo = vec![me.to_owned()];
        while let Some(id) = todo.pop() {
            if !through_macros && is_proc_macro(&id) {
                continue;
            }
            if seen.insert(id.clone()) {
                todo.extend(normal(&id));
            }
        }
        seen
    };
    let linked = closure(false);
    let seen = closure(true);
    let ref_of = |id: &str| {
        packages.get(id).map(|p| {
            purl(
                p["name"].as_str().unwrap_or(""),
                p["version"].as_str().unwrap_or(""),
            )
        })
    };
    let mut components = Vec::new();
    let mut dependencies = Vec::new();
    for id in &seen {
        let Some(p) = packages.get(id.as_str()) else {
            continue;
        };
        let (name, version) = (
            p["name"].as_str().unwrap_or(""),
            p["version"].as_str().unwrap_or(""),
        );
        let r = purl(name, version);
        let mut deps: Vec<String> = normal(id).iter().filter_map(|d| ref_of(d)).collect();
        deps.sort();
        deps.dedup();
        dependencies.push(serde_json::json!({ "ref": r, "dependsOn": deps }));
        if id == me {
            continue;
        }
        let mut c = serde_json::json!({
            "type": "library",
            "bom-ref": r,
            "name": name,
            "version": version,
            "licenses": licences(p),
            "purl": r,
        });
        if !linked.contains(id) {
            c["scope"] = serde_json::json!("excluded");
        }
        if let Some(sum) = sums.get(&format!("{name}@{version}")) {
            c["hashes"] = serde_json::json!([{ "alg": "SHA-256", "content": sum }]);
        }
        if let Some(d) = p["description"].as_str() {
            c["description"] = serde_json::json!(d.trim());
        }
        components.push(c);
    }
    let rp = packages
        .get(me)
        .copied()
        .unwrap_or(&serde_json::Value::Null);
    let version = rp["version"].as_str().unwrap_or("0.0.0");
    let bom = serde_json::json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": timestamp,
            "component": {
                "type": "application",
                "bom-ref": purl("rampart", version),
                "name": "rampart",
                "version": version,
                "description": "Security gateway and hardening toolkit",
                "licenses": licences(rp),
                "purl": purl("rampart", version),
            },
            "properties": [{ "name": "cargo:target", "value": target }],
        },
        "components": components,
        "dependencies": dependencies,
    });
    serde_json::to_string_pretty(&bom).map_err(|e| e.to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
    let commit = if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    };
    let branch = git(&["rev-parse", "--abbrev-ref", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=RAMPART_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=RAMPART_GIT_BRANCH={branch}");
    let build_time = rfc3339(secs);
    println!("cargo:rustc-env=RAMPART_BUILD_TIME={build_time}");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let root = Path::new(&manifest_dir).join("../..");
    let sbom_text = match sbom(&root, &build_time) {
        Ok(s) => s,
        Err(e) => {
            println!("cargo:warning=no SBOM embedded: {e}");
            format!("error: {e}")
        }
    };
    let out_dir = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into());
    if let Err(e) = std::fs::write(Path::new(&out_dir).join("sbom.cdx.json"), sbom_text) {
        println!("cargo:warning=cannot write the SBOM: {e}");
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.toml").display()
    );
    println!("cargo:rerun-if-changed=Cargo.toml");
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{r}");
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
