//! The verification keys: the HMAC secret, PEM public keys and a local JWKS file that is read
//! again when it changes. Picks the keys a token may be checked with from its header, so a key
//! of one family never checks a token of another (no HS256 token verified with an RSA public key
//! used as an HMAC secret). Does not look at claims.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Header};
use parking_lot::Mutex;

use crate::reload::{Look, Watch};

/// How often the JWKS file is looked at, at most (on use: verifying a token).
const JWKS_CHECK: Duration = Duration::from_secs(1);

/// A key and where it came from (for messages).
#[derive(Clone)]
pub(super) struct Key {
    pub(super) key: DecodingKey,
    /// `kid` of a JWKS key.
    pub(super) kid: Option<String>,
    /// The one algorithm a JWKS key declares (`alg`), when it does.
    pub(super) alg: Option<Algorithm>,
    pub(super) source: String,
}

/// Why keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

struct Jwks {
    path: PathBuf,
    /// The file as last read: a look tells whether its contents changed since.
    watch: Watch,
    checked: Instant,
    keys: Arc<[Key]>,
}

pub(super) struct KeyStore {
    hmac: Option<Key>,
    pem: Vec<Key>,
    jwks: Option<Mutex<Jwks>>,
}

impl KeyStore {
    pub(super) fn load(
        secret: Option<&str>,
        pem_files: &[PathBuf],
        jwks_file: Option<&Path>,
    ) -> Result<KeyStore, KeyError> {
        let hmac = secret.filter(|s| !s.is_empty()).map(|s| Key {
            key: DecodingKey::from_secret(s.as_bytes()).expect("an HMAC key is any byte string"),
            kid: None,
            alg: None,
            source: "auth.jwt_secret".into(),
        });
        let mut pem = Vec::with_capacity(pem_files.len());
        for path in pem_files {
            pem.push(read_pem(path)?);
        }
        let jwks = match jwks_file {
            None => None,
            Some(path) => {
                let mut watch = Watch::files("JWKS file", [path.to_owned()]);
                let read = watch.read().map_err(|e| KeyError::Read {
                    path: e.path,
                    cause: e.source,
                })?;
                let keys = parse_jwks(path, &read.files[0].bytes)?;
                Some(Mutex::new(Jwks {
                    path: path.to_owned(),
                    watch,
                    checked: Instant::now(),
                    keys,
                }))
            }
        };
        Ok(KeyStore { hmac, pem, jwks })
    }

    /// The keys a token with this header may be checked with: same family as its `alg`, the
    /// JWKS key named by `kid` when it has one, and a JWKS key's own `alg` respected.
    pub(super) fn candidates(&self, header: &Header) -> Vec<Key> {
        let family = header.alg.family();
        let mut out = Vec::new();
        if family == AlgorithmFamily::Hmac {
            out.extend(self.hmac.iter().cloned());
        }
        out.extend(
            self.pem
                .iter()
                .filter(|k| k.key.family() == family)
                .cloned(),
        );
        if let Some(jwks) = &self.jwks {
            let keys = self.jwks_keys(jwks);
            out.extend(
                keys.iter()
                    .filter(|k| k.key.family() == family)
                    .filter(|k| k.alg.is_none_or(|a| a == header.alg))
                    .filter(|k| match (&header.kid, &k.kid) {
                        (Some(want), Some(have)) => want == have,
                        _ => true,
                    })
                    .cloned(),
            );
        }
        out
    }

    /// The JWKS keys, read again when the file's contents changed (looked at at most once a
    /// second). A file that no longer parses, or cannot be read, is logged and the keys read
    /// before stay in force.
    fn jwks_keys(&self, jwks: &Mutex<Jwks>) -> Arc<[Key]> {
        let mut j = jwks.lock();
        if j.checked.elapsed() >= JWKS_CHECK {
            j.checked = Instant::now();
            // `Settling` (caught being written) is taken at the next look.
            if let Look::Changed(read) = j.watch.look() {
                match parse_jwks(&j.path, &read.files[0].bytes) {
                    Ok(keys) => {
                        tracing::info!(path = %j.path.display(), keys = keys.len(), "JWKS file reloaded");
                        j.keys = keys;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "JWKS file changed but cannot be used; the keys read before stay in force");
                    }
                }
            }
        }
        j.keys.clone()
    }

    /// Which families have keys (for the "no key for this algorithm" message).
    pub(super) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.hmac.is_some() {
            parts.push("an HMAC secret".to_owned());
        }
        for k in &self.pem {
            parts.push(k.source.clone());
        }
        if let Some(j) = &self.jwks {
            let j = j.lock();
            parts.push(format!("{} key(s) of {}", j.keys.len(), j.path.display()));
        }
        parts.join(", ")
    }
}

fn read_pem(path: &Path) -> Result<Key, KeyError> {
    let bytes = std::fs::read(path).map_err(|cause| KeyError::Read {
        path: path.to_owned(),
        cause,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    // The PEM label says RSA or not; EC and Ed25519 keys are both "PUBLIC KEY": try each.
    let key = DecodingKey::from_rsa_pem(&bytes)
        .or_else(|_| DecodingKey::from_ec_pem(&bytes))
        .or_else(|_| DecodingKey::from_ed_pem(&bytes))
        .map_err(|e| KeyError::Parse {
            path: path.to_owned(),
            message: format!(
                "not an RSA, EC (P-256/P-384) or Ed25519 public key in PEM ({e}); first line: {:?}",
                text.lines().next().unwrap_or("")
            ),
        })?;
    Ok(Key {
        key,
        kid: None,
        alg: None,
        source: path.display().to_string(),
    })
}

/// The keys of a JWKS document (`path` is for messages).
fn parse_jwks(path: &Path, bytes: &[u8]) -> Result<Arc<[Key]>, KeyError> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| KeyError::Parse {
        path: path.to_owned(),
        message: format!("not a JWKS document ({e})"),
    })?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for (i, jwk) in set.keys.iter().enumerate() {
        let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::Parse {
            path: path.to_owned(),
            message: format!("key {i}: {e}"),
        })?;
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        keys.push(Key {
            key,
            kid: jwk.common.key_id.clone(),
            alg,
            source: format!("{} key {i}", path.display()),
        });
    }
    Ok(keys.into())
}
