//! Standard Webhooks signing: endpoint secrets (`whsec_<base64>`), the `webhook-signature` value
//! (`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per secret while a secret is
//! rotated), the four headers of a delivery, and the `webhook-id` of a batch, stable across its
//! retries. Knows nothing of HTTP clients, endpoints' state or when to send.
//!
//! What a receiver checks is the `standardwebhooks` package's `Webhook.verify` (PyPI, npm, and
//! the other languages of github.com/standard-webhooks/standard-webhooks); the test vectors below
//! were computed with it.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{HeaderName, HeaderValue, InvalidHeaderValue, CONTENT_TYPE};
use sha2::{Digest, Sha256};

use crate::vocab::Pos;

/// The prefix every secret's text form carries.
const PREFIX: &str = "whsec_";
/// Bounds of a decoded key: Standard Webhooks asks for 24 to 64 bytes.
const MIN_KEY: usize = 24;
const MAX_KEY: usize = 64;
/// Length of a generated key.
const GENERATED_KEY: usize = 32;

/// A bad `whsec_...` text. Never carries the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret starts with `whsec_` followed by base64 (like `whsec_` + 32 random bytes in base64)")]
    Prefix,
    #[error("the webhook secret after `whsec_` is not standard base64: {0}")]
    Base64(#[source] base64::DecodeError),
    #[error("the webhook secret's key is {0} bytes; it must be at least {MIN_KEY} bytes (32 are generated)")]
    TooShort(usize),
    #[error("the webhook secret's key is {0} bytes; it must be at most {MAX_KEY} bytes")]
    TooLong(usize),
}

/// An endpoint's signing key, decoded. `Display` gives its `whsec_` form (shown once, when
/// created); `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    key: Vec<u8>,
}

impl Secret {
    /// 32 random bytes from the thread's CSPRNG (`rand::rng()` is ChaCha seeded from the OS).
    pub fn generate() -> Secret {
        let mut key = vec![0u8; GENERATED_KEY];
        rand::Rng::fill(&mut rand::rng(), key.as_mut_slice());
        Secret { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length; ours are 24 to 64 bytes by construction.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC accepts any key length")
    }
}

impl FromStr for Secret {
    type Err = SecretError;

    fn from_str(text: &str) -> Result<Secret, SecretError> {
        let encoded = text.strip_prefix(PREFIX).ok_or(SecretError::Prefix)?;
        let key = STANDARD.decode(encoded).map_err(SecretError::Base64)?;
        match key.len() {
            n if n < MIN_KEY => Err(SecretError::TooShort(n)),
            n if n > MAX_KEY => Err(SecretError::TooLong(n)),
            _ => Ok(Secret { key }),
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", STANDARD.encode(&self.key))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The `webhook-signature` value: `v1,<base64>` per secret, space-separated, in the order given
/// (during a rotation the new secret and the old one both sign, and a receiver holding either
/// accepts). An empty `secrets` gives an empty value, which every verifier refuses; the caller
/// keeps at least one secret per endpoint.
pub fn sign(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut out = String::with_capacity(secrets.len() * 48);
    let mut ts = itoa::Buffer::new();
    let ts = ts.format(timestamp);
    for secret in secrets {
        let mut mac = secret.mac();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body);
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("v1,");
        STANDARD.encode_string(mac.finalize().into_bytes(), &mut out);
    }
    out
}

pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// The headers every delivery carries: `webhook-id`, `webhook-timestamp` (Unix seconds),
/// `webhook-signature` and `content-type: application/json`. Fails only on an `id` or
/// `signature` that is not a header value (control characters); `message_id` and `sign` never
/// make one.
pub fn headers(
    id: &str,
    timestamp: i64,
    signature: &str,
) -> Result<[(HeaderName, HeaderValue); 4], InvalidHeaderValue> {
    Ok([
        (WEBHOOK_ID, HeaderValue::from_str(id)?),
        (WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp)),
        (WEBHOOK_SIGNATURE, HeaderValue::from_str(signature)?),
        (CONTENT_TYPE, HeaderValue::from_static("application/json")),
    ])
}

/// The `webhook-id` of the batch `first..=last` sent to `endpoint`: `msg_` and 32 hex digits of
/// SHA-256 over the three. The same batch retried (after a restart too) keeps its id, so a
/// receiver can drop a duplicate; another endpoint or another batch gets another one.
pub fn message_id(endpoint: &str, first: Pos, last: Pos) -> String {
    let mut hash = Sha256::new();
    // Length-prefixed, so that no two (endpoint, first, last) hash the same bytes.
    hash.update((endpoint.len() as u64).to_be_bytes());
    hash.update(endpoint.as_bytes());
    for pos in [first, last] {
        hash.update(pos.commit.0.to_be_bytes());
        hash.update(pos.ordinal.to_be_bytes());
    }
    let digest = hash.finalize();
    let mut id = String::with_capacity(4 + 32);
    id.push_str("msg_");
    for byte in &digest[..16] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        id.push(HEX[usize::from(byte >> 4)] as char);
        id.push(HEX[usize::from(byte & 0xF)] as char);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Lsn;

    /// The example of the Standard Webhooks spec, checked with `standardwebhooks` 1.3.0 (PyPI):
    /// `Webhook(SECRET).sign(ID, datetime.fromtimestamp(TS, timezone.utc), BODY)`.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    /// A 32-byte key (bytes 0..32) and a body that is not UTF-8, also from `standardwebhooks`
    /// 1.3.0, which signs bytes as given.
    const KEY32_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY32_ID: &str = "msg_0123abcd";
    const KEY32_TS: i64 = 1700000000;
    const KEY32_BODY: &[u8] = b"[{\"pos\":\"000000000152A058-00000003\",\"op\":\"I\"}]\xff";
    const KEY32_SIG: &str = "v1,TYCptsvyJoNcIV6kMUIWe0k6kVHRtW0d5P3p5Lts264=";

    #[test]
    fn signatures_match_the_standardwebhooks_package() {
        let spec: Secret = SPEC_SECRET.parse().unwrap();
        assert_eq!(
            sign(std::slice::from_ref(&spec), SPEC_ID, SPEC_TS, SPEC_BODY),
            SPEC_SIG
        );
        let key32: Secret = KEY32_SECRET.parse().unwrap();
        assert_eq!(key32.key, (0u8..32).collect::<Vec<_>>());
        assert_eq!(
            sign(std::slice::from_ref(&key32), KEY32_ID, KEY32_TS, KEY32_BODY),
            KEY32_SIG
        );
        // Rotation: one signature per secret, in order, space-separated.
        assert_eq!(
            sign(&[key32, spec.clone()], SPEC_ID, SPEC_TS, SPEC_BODY),
            format!(
                "{} {SPEC_SIG}",
                sign(
                    &[KEY32_SECRET.parse().unwrap()],
                    SPEC_ID,
                    SPEC_TS,
                    SPEC_BODY
                )
            )
        );
        assert_eq!(sign(&[], SPEC_ID, SPEC_TS, SPEC_BODY), "");
        // Each input counts.
        let one = [spec];
        assert_ne!(sign(&one, SPEC_ID, SPEC_TS + 1, SPEC_BODY), SPEC_SIG);
        assert_ne!(sign(&one, "msg_other", SPEC_TS, SPEC_BODY), SPEC_SIG);
        assert_ne!(
            sign(&one, SPEC_ID, SPEC_TS, b"{\"test\": 2432232315}"),
            SPEC_SIG
        );
    }

    /// Verifies a fresh signature (timestamp now, two secrets) with the `standardwebhooks`
    /// package when `python3` can import it (`pip install standardwebhooks`); the hard-coded
    /// vectors above hold the same check without it.
    #[test]
    fn standardwebhooks_verifies_a_fresh_signature_when_installed() {
        let importable = std::process::Command::new("python3")
            .args(["-c", "import standardwebhooks"])
            .output()
            .is_ok_and(|out| out.status.success());
        if !importable {
            eprintln!("skipped: standardwebhooks not installed (pip install standardwebhooks)");
            return;
        }
        let old = Secret::generate();
        let new = Secret::generate();
        let id = message_id(
            "orders",
            Pos::new(Lsn(0x16B3748), 1),
            Pos::new(Lsn(0x16B3748), 7),
        );
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let body = br#"[{"pos":"00000000016B3748-00000001","op":"I","row":{"id":1,"note":"caf\u00e9 \"x\""}}]"#;
        let signature = sign(&[new.clone(), old.clone()], &id, ts, body);
        let script = r#"
import sys, json
from standardwebhooks.webhooks import Webhook
secret, wid, ts, sig, body = sys.argv[1:6]
headers = {"webhook-id": wid, "webhook-timestamp": ts, "webhook-signature": sig}
Webhook(secret).verify(body.encode(), headers)
try:
    Webhook(secret).verify((body + " ").encode(), headers)
except Exception:
    print("verified")
"#;
        let body_text = std::str::from_utf8(body).unwrap();
        for secret in [&old, &new] {
            let out = std::process::Command::new("python3")
                .args(["-c", script])
                .arg(secret.to_string())
                .arg(&id)
                .arg(ts.to_string())
                .arg(&signature)
                .arg(body_text)
                .output()
                .unwrap();
            assert!(
                out.status.success() && out.stdout == b"verified\n",
                "standardwebhooks refused: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn secrets_parse_print_and_stay_out_of_debug() {
        let secret: Secret = KEY32_SECRET.parse().unwrap();
        assert_eq!(secret.to_string(), KEY32_SECRET);
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        let generated = Secret::generate();
        assert_eq!(generated.key.len(), 32);
        assert_ne!(generated, Secret::generate());
        assert_eq!(generated.to_string().parse::<Secret>().unwrap(), generated);
        // 24 and 64 bytes are the bounds, both accepted.
        for n in [MIN_KEY, MAX_KEY] {
            let text = format!("whsec_{}", STANDARD.encode(vec![7u8; n]));
            assert_eq!(text.parse::<Secret>().unwrap().key.len(), n);
        }
    }

    #[test]
    fn bad_secrets_are_refused_with_the_problem_named() {
        let cases = [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SecretError::Prefix),
            ("whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SecretError::Prefix),
            ("", SecretError::Prefix),
            ("whsec_", SecretError::TooShort(0)),
            (
                &format!("whsec_{}", STANDARD.encode([1u8; 23])),
                SecretError::TooShort(23),
            ),
            (
                &format!("whsec_{}", STANDARD.encode([1u8; 65])),
                SecretError::TooLong(65),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Secret>().unwrap_err(), want, "{text:?}");
        }
        for text in [
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw!",
            "whsec_MfKQ9r8G KYqrTwjUPD8ILPZIo2LaLaSw",
            // URL-safe alphabet is not the standard one.
            "whsec_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_",
        ] {
            let err = text.parse::<Secret>().unwrap_err();
            assert!(matches!(err, SecretError::Base64(_)), "{text:?}: {err:?}");
            assert!(err.to_string().contains("not standard base64"));
        }
        // The message names the fix and never echoes the secret.
        let err = "whsec_c2hvcnQ=".parse::<Secret>().unwrap_err().to_string();
        assert!(
            err.contains("at least 24 bytes") && !err.contains("c2hvcnQ"),
            "{err}"
        );
    }

    #[test]
    fn headers_are_the_four_of_standard_webhooks() {
        let [id, ts, sig, ct] = headers("msg_abc", 1614265330, SPEC_SIG).unwrap();
        assert_eq!(
            (id.0.as_str(), id.1.to_str().unwrap()),
            ("webhook-id", "msg_abc")
        );
        assert_eq!(
            (ts.0.as_str(), ts.1.to_str().unwrap()),
            ("webhook-timestamp", "1614265330")
        );
        assert_eq!(
            (sig.0.as_str(), sig.1.to_str().unwrap()),
            ("webhook-signature", SPEC_SIG)
        );
        assert_eq!(
            (ct.0.as_str(), ct.1.to_str().unwrap()),
            ("content-type", "application/json")
        );
        assert!(headers("msg_\n", 0, SPEC_SIG).is_err());
    }

    #[test]
    fn message_ids_are_stable_per_batch_and_distinct_between_batches() {
        let a = Pos::new(Lsn(0x152A058), 1);
        let b = Pos::new(Lsn(0x152A058), 3);
        let c = Pos::new(Lsn(0x152A100), 1);
        let id = message_id("orders", a, b);
        assert_eq!(id, message_id("orders", a, b));
        assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
        assert!(id[4..]
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let others = [
            message_id("orders2", a, b),
            message_id("orders", a, c),
            message_id("orders", b, b),
            message_id("orders", b, a),
            message_id("", a, b),
        ];
        for other in &others {
            assert_ne!(&id, other);
        }
        // Known values (computed with Python's hashlib over the same bytes), so that a change of
        // derivation, which would re-id every pending batch after an upgrade, is a visible one.
        assert_eq!(id, "msg_007d65fcb20ad76ff129437a0156c2f3");
        assert_eq!(
            message_id("e1", Pos::ZERO, Pos::ZERO),
            "msg_e56bb6a218e774b186fe81a895109b0a"
        );
    }
}
