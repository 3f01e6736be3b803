//! Container image references: `[registry/]name[:tag][@digest]`.

/// How an image reference is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// `@sha256:…` (with or without a tag): reproducible.
    Digest,
    /// A tag other than `latest`, no digest: the registry may move it.
    Tag,
    /// `:latest` or no tag at all.
    Latest,
    /// Not decidable: the reference is built from variables (`$BASE`, `${IMAGE}`).
    Unknown,
}

/// Classifies an image reference.
pub fn pin(image: &str) -> Pin {
    let image = image.trim();
    if image.contains('@') {
        let digest = image.rsplit('@').next().unwrap_or("");
        return if digest.contains(':') {
            Pin::Digest
        } else {
            Pin::Unknown
        };
    }
    // The tag is after the last ':' that follows the last '/' (a ':' before it is a
    // registry port).
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = last.split_once(':').map(|(_, t)| t);
    let name = match tag {
        Some(t) => image.get(..image.len() - t.len() - 1).unwrap_or(image),
        None => image,
    };
    if name.contains('$') {
        return Pin::Unknown;
    }
    match tag {
        None | Some("latest" | "") => Pin::Latest,
        Some(_) => Pin::Tag,
    }
}

/// The image name without registry-independent decoration: tag and digest removed,
/// lower-cased.
pub fn name_and_tag(image: &str) -> (String, Option<String>) {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    match last.split_once(':') {
        Some((_, t)) => {
            let name = no_digest
                .get(..no_digest.len() - t.len() - 1)
                .unwrap_or(no_digest);
            (name.to_ascii_lowercase(), Some(t.to_ascii_lowercase()))
        }
        None => (no_digest.to_ascii_lowercase(), None),
    }
}

/// A minimal base for a final image: distroless, scratch, alpine, wolfi/chainguard, or a
/// `-slim` variant.
pub fn is_minimal_base(image: &str) -> bool {
    let (name, tag) = name_and_tag(image);
    let tag = tag.unwrap_or_default();
    name == "scratch"
        || name.contains("distroless")
        || name.contains("alpine")
        || tag.contains("alpine")
        || name.contains("wolfi")
        || name.contains("chainguard")
        || name.starts_with("cgr.dev/")
        || name.ends_with("-slim")
        || tag.contains("slim")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins() {
        assert_eq!(pin("busybox"), Pin::Latest);
        assert_eq!(pin("alpine:latest"), Pin::Latest);
        assert_eq!(pin("localhost:5000/app"), Pin::Latest);
        assert_eq!(pin("localhost:5000/app:1.2"), Pin::Tag);
        assert_eq!(pin("redis:7.4-alpine"), Pin::Tag);
        assert_eq!(pin("redis@sha256:0123"), Pin::Digest);
        assert_eq!(pin("redis:7@sha256:0123"), Pin::Digest);
        assert_eq!(pin("$BASE"), Pin::Unknown);
        assert_eq!(pin("${REG}/app:1"), Pin::Unknown);
        assert_eq!(pin("gcr.io/distroless/static:latest-$ARCH"), Pin::Tag);
    }

    #[test]
    fn minimal() {
        assert!(is_minimal_base("gcr.io/distroless/static:nonroot"));
        assert!(is_minimal_base("python:3.10-alpine"));
        assert!(is_minimal_base("debian:bookworm-slim"));
        assert!(is_minimal_base("cgr.dev/chainguard/static"));
        assert!(!is_minimal_base("ubuntu:22.04"));
        assert!(!is_minimal_base("nginx:1.19.3"));
    }
}
