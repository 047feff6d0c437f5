use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{header, HeaderMap as AxumHeaders, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use parking_lot::Mutex;

use super::*;

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse().unwrap())
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse().unwrap())
}

#[test]
fn every_ipv4_range_is_refused_from_its_first_to_its_last_address() {
    for &(net, len, range) in V4_REFUSED {
        let size = if len == 0 {
            u64::from(u32::MAX) + 1
        } else {
            1u64 << (32 - len)
        };
        let first = net;
        let last = (u64::from(net) + size - 1) as u32;
        let middle = (u64::from(net) + size / 2) as u32;
        for ip in [first, middle, last] {
            let ip = IpAddr::V4(Ipv4Addr::from(ip));
            // 255.255.255.255 is also the last of 240.0.0.0/4; it is named the narrower way.
            let want = if ip == v4("255.255.255.255") {
                "broadcast"
            } else {
                range
            };
            assert_eq!(refused_range(ip), Some(want), "{ip} in {range}");
            // The same address through IPv6: mapped, compatible (except the two IPv6
            // specials it collides with) and NAT64.
            let IpAddr::V4(ip4) = ip else { unreachable!() };
            assert_eq!(refused_range(IpAddr::V6(ip4.to_ipv6_mapped())), Some(want));
            if u32::from(ip4) > 1 {
                assert_eq!(
                    refused_range(IpAddr::V6(ip4.to_ipv6_compatible())),
                    Some(want)
                );
            }
            let nat64 = Ipv6Addr::from((0x64_ff9bu128 << 96) | u128::from(u32::from(ip4)));
            assert_eq!(refused_range(IpAddr::V6(nat64)), Some(want), "{nat64}");
        }
    }
    // The spec's ranges, by name.
    for (ip, range) in [
        ("127.0.0.1", "loopback"),
        ("127.255.255.255", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("100.127.255.255", "shared (CGNAT)"),
        ("0.0.0.0", "unspecified"),
        ("255.255.255.255", "broadcast"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.200", "documentation"),
    ] {
        assert_eq!(refused_range(v4(ip)), Some(range), "{ip}");
    }
}

#[test]
fn public_ipv4_next_to_the_ranges_is_allowed() {
    for ip in [
        "1.0.0.0",
        "1.1.1.1",
        "8.8.8.8",
        "9.255.255.255",
        "11.0.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "126.255.255.255",
        "128.0.0.0",
        "169.253.255.255",
        "169.255.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.1.255",
        "192.0.3.0",
        "192.167.255.255",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "198.51.99.255",
        "198.51.101.0",
        "203.0.112.255",
        "203.0.114.0",
        "223.255.255.255",
    ] {
        assert_eq!(refused_range(v4(ip)), None, "{ip}");
        let IpAddr::V4(ip4) = v4(ip) else {
            unreachable!()
        };
        assert_eq!(
            refused_range(IpAddr::V6(ip4.to_ipv6_mapped())),
            None,
            "mapped {ip}"
        );
    }
}

#[test]
fn ipv6_ranges_are_refused_and_public_ipv6_allowed() {
    for (ip, range) in [
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link-local"),
        ("fc00::", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "unique-local"),
        ("fec0::1", "site-local"),
        ("2001:db8::1", "documentation"),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "documentation"),
        ("3fff::1", "documentation"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:100.64.0.1", "shared (CGNAT)"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("::127.0.0.1", "loopback"),
        ("64:ff9b::192.168.0.1", "private"),
    ] {
        assert_eq!(refused_range(v6(ip)), Some(range), "{ip}");
    }
    for ip in [
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
        "2001:db9::",
        "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "::ffff:8.8.8.8",
        "::8.8.8.8",
        "64:ff9b::808:808",
        "::2:0:0:1",
    ] {
        assert_eq!(refused_range(v6(ip)), None, "{ip}");
    }
}

#[test]
fn urls_are_checked_statically_and_by_their_literals() {
    for ok in [
        "https://example.com/hook",
        "http://example.com:8080/a?b=c",
        "https://8.8.8.8/x",
        "https://[2606:4700:4700::1111]/x",
        "https://localhost.example.com/",
    ] {
        let url = check_url(ok, false).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(url.as_str().trim_end_matches('/'), ok.trim_end_matches('/'));
    }
    let private = [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:a00:1]/", "private"),
        ("http://10.0.0.5/", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fd00::1]/", "unique-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://100.64.1.1/", "shared (CGNAT)"),
        // The URL parser reads these as IPv4 literals (WHATWG): decimal, hex, short forms.
        ("http://2130706433/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://localhost/", "loopback"),
        ("http://LOCALHOST./", "loopback"),
        ("http://api.localhost:3000/", "loopback"),
    ];
    for (url, range) in private {
        let err = check_url(url, false).unwrap_err();
        assert!(
            matches!(&err, UrlError::Private { range: r, .. } if *r == range),
            "{url}: {err:?}"
        );
        assert!(err.to_string().contains("webhooks.allow_private"), "{err}");
        check_url(url, true).unwrap_or_else(|e| panic!("{url} with allow_private: {e}"));
    }
    for (url, want) in [
        ("ftp://example.com/", UrlError::Scheme("ftp".into())),
        ("file:///etc/passwd", UrlError::Scheme("file".into())),
        ("ws://example.com/", UrlError::Scheme("ws".into())),
        ("javascript:alert(1)", UrlError::Scheme("javascript".into())),
        ("https://user:pw@example.com/", UrlError::Userinfo),
        ("https://user@example.com/", UrlError::Userinfo),
        ("https://:pw@example.com/", UrlError::Userinfo),
    ] {
        assert_eq!(check_url(url, false).unwrap_err(), want, "{url}");
        assert_eq!(
            check_url(url, true).unwrap_err(),
            want,
            "{url} allow_private"
        );
    }
    for url in ["", "example.com/hook", "http://", "https://exa mple.com/"] {
        let err = check_url(url, true).unwrap_err();
        assert!(matches!(err, UrlError::Parse { .. }), "{url}: {err:?}");
    }
}

#[tokio::test]
async fn the_resolver_drops_loopback_and_names_the_setting() {
    let err = match GuardedResolver
        .resolve(Name::from_str("localhost").unwrap())
        .await
    {
        Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains("localhost resolves only to refused addresses"),
        "{err}"
    );
    assert!(err.contains("127.0.0.1 loopback"), "{err}");
    assert!(err.contains("webhooks.allow_private"), "{err}");
    // A literal handed to the resolver (reqwest does not, hyper parses it first) is judged too.
    assert!(GuardedResolver
        .resolve(Name::from_str("10.1.2.3").unwrap())
        .await
        .is_err());
    let addrs: Vec<SocketAddr> = GuardedResolver
        .resolve(Name::from_str("8.8.8.8").unwrap())
        .await
        .unwrap()
        .collect();
    assert_eq!(addrs, ["8.8.8.8:0".parse::<SocketAddr>().unwrap()]);
}

/// What the test receiver saw.
#[derive(Default)]
struct Seen {
    hits: AtomicUsize,
    redirected: AtomicUsize,
    last: Mutex<Option<(AxumHeaders, Bytes)>>,
}

/// A receiver on 127.0.0.1 whose paths answer as their names say.
async fn receiver() -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let app = Router::new()
        .route(
            "/ok",
            post(move |headers: AxumHeaders, body: Bytes| {
                let s = s.clone();
                async move {
                    s.hits.fetch_add(1, Ordering::SeqCst);
                    *s.last.lock() = Some((headers, body));
                    AxumStatus::NO_CONTENT
                }
            }),
        )
        .route("/gone", post(|| async { AxumStatus::GONE }))
        .route("/bad", post(|| async { AxumStatus::UNPROCESSABLE_ENTITY }))
        .route(
            "/busy",
            post(|| async { (AxumStatus::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "7")]) }),
        )
        .route(
            "/down",
            post(|| async {
                let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(90));
                (AxumStatus::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, at)]).into_response()
            }),
        )
        .route(
            "/big",
            post(|| async { (AxumStatus::OK, vec![b'x'; 3 * DRAIN_LIMIT]) }),
        )
        .route(
            "/moved",
            post(|| async { (AxumStatus::FOUND, [(header::LOCATION, "/followed")]) }),
        )
        .route(
            "/followed",
            post({
                let s = seen.clone();
                move || async move {
                    s.redirected.fetch_add(1, Ordering::SeqCst);
                    AxumStatus::OK
                }
            }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                AxumStatus::OK
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn private_ok() -> Outbound {
    Outbound::new(&OutboundConfig {
        allow_private: true,
        ca_file: None,
    })
    .unwrap()
}

async fn post_to(out: &Outbound, url: &str, timeout: Duration) -> Outcome {
    let url = Url::parse(url).unwrap();
    out.post(&url, HeaderMap::new(), Bytes::from_static(b"[]"), timeout)
        .await
}

#[tokio::test]
async fn a_private_address_is_refused_unless_allowed() {
    let (addr, seen) = receiver().await;
    let guarded = Outbound::new(&OutboundConfig::default()).unwrap();
    let port = addr.port();
    for url in [
        format!("http://127.0.0.1:{port}/ok"),
        format!("http://localhost:{port}/ok"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok"),
    ] {
        match post_to(&guarded, &url, Duration::from_secs(5)).await {
            Outcome::Retry {
                status: None,
                error: Some(error),
                ..
            } => assert!(error.contains("webhooks.allow_private"), "{url}: {error}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    // Past the static check (which refuses `localhost` before any lookup), the resolver refuses
    // the name at connect time: the client alone, as a name that DNS points at 127.0.0.1 meets it.
    let err = guarded
        .client
        .post(format!("http://localhost:{port}/ok"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let error = describe(err);
    assert!(
        error.contains("localhost resolves only to refused addresses")
            && error.contains("webhooks.allow_private"),
        "{error}"
    );
    assert_eq!(
        seen.hits.load(Ordering::SeqCst),
        0,
        "nothing reached the receiver"
    );

    let open = private_ok();
    for url in [
        format!("http://127.0.0.1:{port}/ok"),
        format!("http://localhost:{port}/ok"),
    ] {
        assert_eq!(
            post_to(&open, &url, Duration::from_secs(5)).await,
            Outcome::Delivered(StatusCode::NO_CONTENT),
            "{url}"
        );
    }
    assert_eq!(seen.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn answers_become_outcomes() {
    let (addr, seen) = receiver().await;
    let out = private_ok();
    let base = format!("http://{addr}");
    let t = Duration::from_secs(5);

    let mut headers = HeaderMap::new();
    for (name, value) in crate::webhooks::sign::headers("msg_1", 1614265330, "v1,abc").unwrap() {
        headers.insert(name, value);
    }
    let url = Url::parse(&format!("{base}/ok")).unwrap();
    let body = Bytes::from_static(br#"[{"pos":"000000000152A058-00000003"}]"#);
    assert_eq!(
        out.post(&url, headers, body.clone(), t).await,
        Outcome::Delivered(StatusCode::NO_CONTENT)
    );
    let (got_headers, got_body) = seen.last.lock().take().unwrap();
    assert_eq!(got_body, body);
    assert_eq!(got_headers["webhook-id"], "msg_1");
    assert_eq!(got_headers["webhook-timestamp"], "1614265330");
    assert_eq!(got_headers["webhook-signature"], "v1,abc");
    assert_eq!(got_headers["content-type"], "application/json");

    assert_eq!(
        post_to(&out, &format!("{base}/gone"), t).await,
        Outcome::Gone
    );
    assert_eq!(
        post_to(&out, &format!("{base}/bad"), t).await,
        Outcome::Rejected(StatusCode::UNPROCESSABLE_ENTITY)
    );
    assert_eq!(
        post_to(&out, &format!("{base}/nowhere"), t).await,
        Outcome::Rejected(StatusCode::NOT_FOUND)
    );
    assert_eq!(
        post_to(&out, &format!("{base}/busy"), t).await,
        Outcome::Retry {
            status: Some(StatusCode::TOO_MANY_REQUESTS),
            retry_after: Some(Duration::from_secs(7)),
            error: None
        }
    );
    match post_to(&out, &format!("{base}/down"), t).await {
        Outcome::Retry {
            status: Some(StatusCode::SERVICE_UNAVAILABLE),
            retry_after: Some(wait),
            error: None,
        } => assert!(
            (Duration::from_secs(85)..=Duration::from_secs(90)).contains(&wait),
            "{wait:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        post_to(&out, &format!("{base}/big"), t).await,
        Outcome::Delivered(StatusCode::OK)
    );
    // A redirect is reported, not followed.
    assert_eq!(
        post_to(&out, &format!("{base}/moved"), t).await,
        Outcome::Rejected(StatusCode::FOUND)
    );
    assert_eq!(seen.redirected.load(Ordering::SeqCst), 0);

    match post_to(&out, &format!("{base}/slow"), Duration::from_millis(200)).await {
        Outcome::Retry {
            status: None,
            retry_after: None,
            error: Some(error),
        } => assert!(error.starts_with("timed out"), "{error}"),
        other => panic!("{other:?}"),
    }

    // Nothing listens on a port just released.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    match post_to(&out, &format!("http://{closed_addr}/ok"), t).await {
        Outcome::Retry {
            status: None,
            error: Some(error),
            ..
        } => assert!(error.starts_with("cannot connect"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn statuses_classify_as_the_spec_says() {
    let ra = Some(Duration::from_secs(3));
    for code in [200, 201, 202, 204, 299] {
        let s = StatusCode::from_u16(code).unwrap();
        assert_eq!(classify(s, ra), Outcome::Delivered(s));
    }
    assert_eq!(classify(StatusCode::GONE, ra), Outcome::Gone);
    for code in [429, 500, 502, 503, 504, 599] {
        let s = StatusCode::from_u16(code).unwrap();
        assert_eq!(
            classify(s, ra),
            Outcome::Retry {
                status: Some(s),
                retry_after: ra,
                error: None
            }
        );
    }
    for code in [
        300, 301, 302, 304, 307, 308, 400, 401, 403, 404, 408, 409, 413, 422, 451,
    ] {
        let s = StatusCode::from_u16(code).unwrap();
        assert_eq!(classify(s, ra), Outcome::Rejected(s), "{code}");
    }
}

#[test]
fn retry_after_reads_seconds_and_http_dates() {
    let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
    let secs = |n| Some(Duration::from_secs(n));
    assert_eq!(parse_retry_after("120", now), secs(120));
    assert_eq!(parse_retry_after(" 5 ", now), secs(5));
    assert_eq!(parse_retry_after("0", now), secs(0));
    assert_eq!(
        parse_retry_after("99999999999999999999999", now),
        secs(u64::MAX)
    );
    // IMF-fixdate, and the two obsolete forms RFC 9110 still asks recipients to read.
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
        secs(30)
    );
    assert_eq!(
        parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now),
        secs(60)
    );
    assert_eq!(parse_retry_after("Wed Oct 21 07:28:10 2015", now), secs(10));
    // A date already past: no wait.
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
        secs(0)
    );
    for junk in [
        "",
        "-1",
        "1.5",
        "+3",
        "soon",
        "Wed, 32 Oct 2015 07:28:00 GMT",
        "1e3",
    ] {
        assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
    }
}

#[test]
fn a_bad_ca_file_is_an_error_naming_it() {
    let missing = Outbound::new(&OutboundConfig {
        allow_private: false,
        ca_file: Some("/nonexistent/ca.pem".into()),
    })
    .unwrap_err();
    assert!(
        matches!(missing, OutboundError::ReadCa { .. })
            && missing.to_string().contains("/nonexistent/ca.pem"),
        "{missing}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, "not a certificate\n").unwrap();
    let empty = Outbound::new(&OutboundConfig {
        allow_private: false,
        ca_file: Some(path.clone()),
    })
    .unwrap_err();
    assert!(
        matches!(
            empty,
            OutboundError::EmptyCa { .. } | OutboundError::ParseCa { .. }
        ),
        "{empty:?}"
    );
    assert!(empty.to_string().contains("ca.pem"), "{empty}");
}
