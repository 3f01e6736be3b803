//! `rampart sbom`: the CycloneDX 1.5 JSON SBOM of this binary's own dependency set,
//! made at build time by `build.rs` (see there why with `cargo metadata`).

use std::io::Write as _;

/// The SBOM, or `error: …` when the build could not make one.
const SBOM: &str = include_str!(concat!(env!("OUT_DIR"), "/sbom.cdx.json"));

pub fn run() -> u8 {
    if let Some(why) = SBOM.strip_prefix("error: ") {
        eprintln!("rampart sbom: this build has no SBOM: {why}");
        return 2;
    }
    let mut out = std::io::stdout().lock();
    match out
        .write_all(SBOM.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
    {
        Ok(()) => 0,
        Err(_) => 2,
    }
}
