//! Tests of authentication: tokens, keys, the admin token, origins and hosts.

use std::path::PathBuf;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::config::Config;

const SECRET: &str = "a test secret that is long enough";

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/jwt")
        .join(name)
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).expect("test key")
}

fn authenticator(edit: impl FnOnce(&mut Config)) -> Authenticator {
    let mut config = Config::default();
    config.auth.mode = Some(AuthMode::Jwt);
    config.auth.leeway = std::time::Duration::ZERO;
    edit(&mut config);
    Authenticator::from_config(&config).expect("keys load")
}

fn now() -> i64 {
    unix_now() as i64
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({"sub": "user-1", "exp": now() + 600});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn hs(c: &serde_json::Value, secret: &[u8]) -> String {
    let key = EncodingKey::from_secret(secret).expect("hmac key");
    encode(&Header::new(Algorithm::HS256), c, &key).expect("sign")
}

fn signed(alg: Algorithm, private: &str, c: &serde_json::Value) -> String {
    let bytes = pem(private);
    let key = match alg.family() {
        jsonwebtoken::AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&bytes),
        jsonwebtoken::AlgorithmFamily::Ec => EncodingKey::from_ec_pem(&bytes),
        jsonwebtoken::AlgorithmFamily::Ed => EncodingKey::from_ed_pem(&bytes),
        jsonwebtoken::AlgorithmFamily::Hmac => unreachable!(),
    }
    .expect("private key");
    encode(&Header::new(alg), c, &key).expect("sign")
}

fn refused(a: &Authenticator, token: &str, needle: &str) {
    match a.verify(token) {
        Ok(p) => panic!(
            "accepted a token that should be refused ({needle}): {:?}",
            p.claims
        ),
        Err(Unauthorized(m)) => assert!(m.contains(needle), "{m:?} does not say {needle:?}"),
    }
}

#[test]
fn hs256_tokens_are_checked_for_signature_time_audience_and_issuer() {
    let a = authenticator(|c| {
        c.auth.jwt_secret = Some(SECRET.into());
        c.auth.audience = vec!["walcast".into()];
        c.auth.issuer = vec!["https://issuer.test".into()];
    });
    let good = claims(json!({"aud": "walcast", "iss": "https://issuer.test", "tenant": 7}));
    let p = a
        .verify(&hs(&good, SECRET.as_bytes()))
        .expect("valid token");
    assert_eq!(p.subject(), Some("user-1"));
    assert_eq!(p.claim("claims.tenant"), Some(&json!(7)));

    let expired = claims(json!({"aud": "walcast", "iss": "https://issuer.test", "exp": now() - 5}));
    refused(&a, &hs(&expired, SECRET.as_bytes()), "expired");
    let early = claims(json!({"aud": "walcast", "iss": "https://issuer.test", "nbf": now() + 600}));
    refused(&a, &hs(&early, SECRET.as_bytes()), "not valid yet");
    let wrong_aud = claims(json!({"aud": "someone-else", "iss": "https://issuer.test"}));
    refused(&a, &hs(&wrong_aud, SECRET.as_bytes()), "audience");
    let no_aud = claims(json!({"iss": "https://issuer.test"}));
    refused(&a, &hs(&no_aud, SECRET.as_bytes()), "aud");
    let wrong_iss = claims(json!({"aud": "walcast", "iss": "https://evil.test"}));
    refused(&a, &hs(&wrong_iss, SECRET.as_bytes()), "issuer");
    let no_exp = json!({"sub": "u", "aud": "walcast", "iss": "https://issuer.test"});
    refused(&a, &hs(&no_exp, SECRET.as_bytes()), "exp");
    refused(&a, &hs(&good, b"another secret entirely"), "signature");
    refused(&a, "not.a.jwt", "well-formed");
}

#[test]
fn alg_none_is_refused() {
    use base64::Engine as _;
    let a = authenticator(|c| c.auth.jwt_secret = Some(SECRET.into()));
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.{}.",
            b64(json!({"alg": alg, "typ": "JWT"})),
            b64(claims(json!({})))
        );
        refused(&a, &token, "well-formed");
    }
}

#[test]
fn an_hmac_token_is_never_checked_with_a_public_key() {
    // The classic confusion: sign HS256 with the server's RSA public key as the secret.
    let public = pem("rsa_public.pem");
    let forged = hs(&claims(json!({})), &public);
    let rsa_only = authenticator(|c| c.auth.public_keys = vec![testdata("rsa_public.pem")]);
    refused(&rsa_only, &forged, "no configured key verifies HS256");
    // With a secret configured too, only the secret checks HS tokens.
    let both = authenticator(|c| {
        c.auth.public_keys = vec![testdata("rsa_public.pem")];
        c.auth.jwt_secret = Some(SECRET.into());
    });
    refused(&both, &forged, "signature");
    // And an RS256 token is not checked with the secret.
    let secret_only = authenticator(|c| c.auth.jwt_secret = Some(SECRET.into()));
    let rs = signed(Algorithm::RS256, "rsa_private.pem", &claims(json!({})));
    refused(&secret_only, &rs, "no configured key verifies RS256");
}

#[test]
fn rs256_es256_and_eddsa_verify_with_pem_keys() {
    let a = authenticator(|c| {
        c.auth.public_keys = vec![
            testdata("rsa_public.pem"),
            testdata("ec_public.pem"),
            testdata("ed_public.pem"),
        ]
    });
    for (alg, private) in [
        (Algorithm::RS256, "rsa_private.pem"),
        (Algorithm::PS256, "rsa_private.pem"),
        (Algorithm::ES256, "ec_private.pem"),
        (Algorithm::EdDSA, "ed_private.pem"),
    ] {
        let token = signed(alg, private, &claims(json!({})));
        let p = a
            .verify(&token)
            .unwrap_or_else(|e| panic!("{alg:?}: {e:?}"));
        assert_eq!(p.subject(), Some("user-1"));
        let expired = signed(alg, private, &claims(json!({"exp": now() - 5})));
        refused(&a, &expired, "expired");
    }
    // A token signed by another EC key does not verify.
    let other = authenticator(|c| c.auth.public_keys = vec![testdata("ed_public.pem")]);
    let es = signed(Algorithm::ES256, "ec_private.pem", &claims(json!({})));
    refused(&other, &es, "no configured key verifies ES256");
}

#[test]
fn jwks_keys_are_chosen_by_kid_and_reloaded_when_the_file_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    let jwk = |private: &str, alg: Algorithm, kid: &str| {
        let bytes = pem(private);
        let key = match alg.family() {
            jsonwebtoken::AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&bytes),
            _ => EncodingKey::from_ec_pem(&bytes),
        }
        .expect("key");
        let mut jwk = Jwk::from_encoding_key(&key, alg).expect("jwk");
        jwk.common.key_id = Some(kid.into());
        jwk
    };
    let write = |keys: Vec<Jwk>| {
        std::fs::write(
            &path,
            serde_json::to_string(&JwkSet { keys }).expect("json"),
        )
        .expect("write")
    };
    write(vec![jwk("rsa_private.pem", Algorithm::RS256, "rsa-1")]);
    let a = authenticator(|c| c.auth.jwks_file = Some(path.clone()));
    let with_kid = |alg: Algorithm, private: &str, kid: &str| {
        let bytes = pem(private);
        let key = match alg.family() {
            jsonwebtoken::AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&bytes),
            _ => EncodingKey::from_ec_pem(&bytes),
        }
        .expect("key");
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        encode(&header, &claims(json!({})), &key).expect("sign")
    };
    a.verify(&with_kid(Algorithm::RS256, "rsa_private.pem", "rsa-1"))
        .expect("RS256 with the JWKS key");
    refused(
        &a,
        &with_kid(Algorithm::RS256, "rsa_private.pem", "rsa-2"),
        "kid",
    );
    let es = with_kid(Algorithm::ES256, "ec_private.pem", "ec-1");
    refused(&a, &es, "no configured key verifies ES256");
    // The file gains the EC key: picked up without a restart.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(vec![
        jwk("rsa_private.pem", Algorithm::RS256, "rsa-1"),
        jwk("ec_private.pem", Algorithm::ES256, "ec-1"),
    ]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    a.verify(&es).expect("ES256 after the JWKS file changed");
    // A broken file keeps the keys read before.
    std::fs::write(&path, "{ not json").expect("write");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    a.verify(&es).expect("keys kept after a broken JWKS file");
}

#[test]
fn tokens_are_found_in_the_header_the_subprotocol_or_the_query() {
    let mut h = HeaderMap::new();
    assert!(matches!(credentials(&h, None), Credentials::Missing));
    assert!(matches!(credentials(&h, Some("q")), Credentials::Token(t) if t == "q"));
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        "walcast, bearer.abc.def.ghi".parse().expect("header"),
    );
    assert!(matches!(credentials(&h, Some("q")), Credentials::Token(t) if t == "abc.def.ghi"));
    h.insert(header::AUTHORIZATION, "Bearer hdr".parse().expect("header"));
    assert!(matches!(credentials(&h, Some("q")), Credentials::Token(t) if t == "hdr"));
}

#[test]
fn admin_token_and_origins() {
    let a = authenticator(|c| {
        c.auth.jwt_secret = Some(SECRET.into());
        c.admin.token = Some("admin-secret".into());
        c.http.allowed_origins = vec!["https://app.example.com".into()];
    });
    let mut h = HeaderMap::new();
    assert!(a.admin_allowed(&h).is_err());
    h.insert(header::AUTHORIZATION, "Bearer nope".parse().expect("h"));
    assert!(a.admin_allowed(&h).is_err());
    h.insert(
        header::AUTHORIZATION,
        "Bearer admin-secret".parse().expect("h"),
    );
    assert!(a.admin_allowed(&h).is_ok());
    // jwt without admin.token: closed.
    let closed = authenticator(|c| c.auth.jwt_secret = Some(SECRET.into()));
    assert!(closed.admin_allowed(&h).is_err());

    let mut o = HeaderMap::new();
    assert!(a.origin_allowed(&o).is_ok(), "no Origin: not a browser");
    o.insert(
        header::ORIGIN,
        "https://app.example.com".parse().expect("h"),
    );
    assert!(a.origin_allowed(&o).is_ok());
    o.insert(
        header::ORIGIN,
        "https://evil.example.com".parse().expect("h"),
    );
    assert!(a.origin_allowed(&o).is_err());
    o.insert(header::HOST, "evil.example.com".parse().expect("h"));
    assert!(a.origin_allowed(&o).is_ok(), "same origin");
}

#[test]
fn a_fresh_token_must_keep_subject_and_role() {
    let a = Arc::new(authenticator(|c| c.auth.jwt_secret = Some(SECRET.into())));
    let first = a
        .verify(&hs(&claims(json!({"exp": now() + 60})), SECRET.as_bytes()))
        .expect("token");
    let session = SessionAuth::new(a.clone(), first);
    let later = now() + 3600;
    let fresh = hs(&claims(json!({"exp": later})), SECRET.as_bytes());
    assert_eq!(session.refresh(&fresh), Ok(Some(later as u64)));
    assert_eq!(session.expires(), Some(later as u64));
    let other = hs(&claims(json!({"sub": "user-2"})), SECRET.as_bytes());
    assert!(session.refresh(&other).is_err());
    let expired = hs(&claims(json!({"exp": now() - 5})), SECRET.as_bytes());
    assert!(session.refresh(&expired).is_err());
    assert_eq!(
        session.expires(),
        Some(later as u64),
        "a refused token changes nothing"
    );
}

#[test]
fn jwt_mode_needs_a_key_and_non_loopback_needs_a_mode() {
    let mut c = Config {
        database_url: Some("postgres://x@db/x".into()),
        listen: "0.0.0.0:7700".parse().expect("addr"),
        ..Config::default()
    };
    let e = c
        .auth
        .resolve(c.listen, false)
        .expect_err("no mode on 0.0.0.0");
    assert!(e.to_string().contains("auth.mode"), "{e}");
    assert_eq!(
        c.auth.resolve(c.listen, true).ok(),
        Some(AuthMode::None),
        "embedded demo"
    );
    c.auth.mode = Some(AuthMode::Jwt);
    assert!(
        c.auth.resolve(c.listen, false).is_err(),
        "jwt without a key"
    );
    c.auth.jwt_secret = Some(SECRET.into());
    assert_eq!(c.auth.resolve(c.listen, false).ok(), Some(AuthMode::Jwt));
    let loopback: std::net::SocketAddr = "127.0.0.1:7700".parse().expect("addr");
    let mut d = Config::default();
    assert_eq!(d.auth.resolve(loopback, false).ok(), Some(AuthMode::None));
    d.auth.policy_file = Some("p.toml".into());
    assert!(
        d.auth.resolve(loopback, false).is_err(),
        "a policy needs jwt"
    );
}
