//! Stable failure codes: for logs and the `reason` label of
//! `rampart_auth_failures_total`, never for the client (which gets one generic detail).
//! Each is a `&'static str`, so a label set stays bounded whatever a token contains.

/// The reason a token was refused.
pub type Reason = &'static str;

pub const TOO_LARGE: Reason = "too_large";
pub const MALFORMED: Reason = "malformed";
pub const BAD_BASE64: Reason = "bad_base64";
pub const BAD_JSON: Reason = "bad_json";
pub const DUPLICATE_MEMBER: Reason = "duplicate_member";
pub const BAD_HEADER: Reason = "bad_header";
pub const ALG_NONE: Reason = "alg_none";
pub const ALG_NOT_ALLOWED: Reason = "alg_not_allowed";
pub const UNKNOWN_CRIT: Reason = "unknown_crit";
pub const EMBEDDED_KEY: Reason = "embedded_key_header";
pub const MISSING_SIGNATURE: Reason = "missing_signature";
pub const UNKNOWN_KID: Reason = "unknown_kid";
pub const KID_REQUIRED: Reason = "kid_required";
pub const JWK_ALG_MISMATCH: Reason = "jwk_alg_mismatch";
pub const KEY_TYPE_MISMATCH: Reason = "key_type_mismatch";
pub const NO_HMAC_KEY: Reason = "no_hmac_key";
pub const BAD_SIGNATURE: Reason = "bad_signature";
pub const ECDSA_SCALAR_RANGE: Reason = "ecdsa_scalar_out_of_range";
pub const MISSING_EXP: Reason = "missing_exp";
pub const BAD_EXP: Reason = "bad_exp";
pub const BAD_NBF: Reason = "bad_nbf";
pub const BAD_IAT: Reason = "bad_iat";
pub const EXPIRED: Reason = "expired";
pub const NOT_YET_VALID: Reason = "not_yet_valid";
pub const IAT_IN_FUTURE: Reason = "iat_in_future";
pub const MISSING_ISSUER: Reason = "missing_issuer";
pub const BAD_ISSUER: Reason = "bad_issuer";
pub const MISSING_AUDIENCE: Reason = "missing_audience";
pub const BAD_AUDIENCE: Reason = "bad_audience";
pub const MISSING_SUBJECT: Reason = "missing_subject";
pub const BAD_CLAIM: Reason = "bad_claim";
