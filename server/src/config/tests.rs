//! Unit tests for the config tree: file parsing, env and CLI precedence, validation messages,
//! duration parsing and password redaction.

use super::*;
use clap::Parser;
use std::collections::HashMap;

const EXAMPLE: &str = include_str!("../../../docs/reference/walcast.example.toml");

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn example_file() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/reference/walcast.example.toml"
    ))
}

fn invalid_key(err: ConfigError) -> (String, String) {
    match err {
        ConfigError::Invalid { key, message } => (key, message),
        other => panic!("expected Invalid, got {other}"),
    }
}

#[test]
fn example_file_parses_and_validates() {
    let config = Config::from_toml_str(EXAMPLE).expect("example parses");
    config.validate().expect("example validates");
    assert_eq!(
        config.listen,
        "127.0.0.1:7700".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.replication.slot, "walcast");
    assert_eq!(config.replication.status_interval, Duration::from_secs(10));
    assert_eq!(config.replication.max_backoff, Duration::from_secs(30));
    assert_eq!(config.sessions.queue_capacity, 1024);
    assert!(config.embedded.demo);
    assert_eq!(config.log.format, "text");
}

#[test]
fn empty_file_gives_defaults() {
    let config = Config::from_toml_str("").unwrap();
    config.validate().unwrap();
    assert!(config.database_url.is_none());
    assert!(config.pg_config().is_none());
    assert_eq!(
        config.embedded.pg_bin,
        PathBuf::from("/usr/lib/postgresql/15/bin")
    );
}

#[test]
fn unknown_key_is_named() {
    let err = Config::from_toml_str("[replication]\nslott = \"x\"\n").unwrap_err();
    assert!(err.contains("slott"), "{err}");
    let err = Config::from_toml_str("lisen = \"1.2.3.4:5\"\n").unwrap_err();
    assert!(err.contains("lisen"), "{err}");
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    assert_eq!(
        parse_duration(" 1h 30m ").unwrap(),
        Duration::from_secs(5400)
    );
    assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
    assert!(parse_duration("10").unwrap_err().contains("unit"));
    assert!(parse_duration("99999999999999999999h").is_err());
    assert!(parse_duration("fast").is_err());
    let err =
        Config::from_toml_str("[replication]\nstatus_interval = \"10 parsecs\"\n").unwrap_err();
    assert!(
        err.contains("status_interval") && err.contains("10 parsecs"),
        "{err}"
    );
}

#[test]
fn env_overrides_file() {
    let cli = Cli {
        config: Some(example_file()),
        ..Cli::default()
    };
    let env = env_of(&[
        ("DATABASE_URL", "postgres://u:pw@db:5432/app"),
        ("WALCAST_LISTEN", "0.0.0.0:8800"),
        ("WALCAST_SLOT", "from_env"),
        ("WALCAST_TEMPORARY_SLOT", "true"),
        ("WALCAST_TABLES", "public.*, sales.orders"),
        ("WALCAST_QUEUE_CAPACITY", "7"),
        ("WALCAST_LOG", "debug"),
        ("WALCAST_LOG_FORMAT", "json"),
        ("WALCAST_PG_BIN", "/opt/pg/bin"),
        ("WALCAST_DATA_DIR", "/var/tmp/pg"),
        ("WALCAST_AUTH_MODE", "jwt"),
        ("WALCAST_JWT_SECRET", "s3cret"),
        ("WALCAST_ADMIN_TOKEN", "adm1n"),
        (
            "WALCAST_ALLOWED_ORIGINS",
            "https://a.example, https://b.example",
        ),
    ]);
    let config = Config::load(&cli, &env).unwrap();
    assert_eq!(config.listen.to_string(), "0.0.0.0:8800");
    assert_eq!(config.auth_mode(), AuthMode::Jwt);
    assert_eq!(config.auth.jwt_secret.as_deref(), Some("s3cret"));
    assert_eq!(config.admin.token.as_deref(), Some("adm1n"));
    assert_eq!(
        config.http.allowed_origins,
        ["https://a.example", "https://b.example"]
    );
    // Secrets stay out of Debug output.
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("s3cret") && !debug.contains("adm1n"),
        "{debug}"
    );
    // Without a mode, a non-loopback listener is refused, naming the key.
    let mut no_mode: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", "postgres://u:pw@db:5432/app"),
        ("WALCAST_LISTEN", "0.0.0.0:8800"),
    ];
    let e = Config::load(&cli, &env_of(&no_mode)).expect_err("no auth.mode on 0.0.0.0");
    assert!(e.to_string().contains("auth.mode"), "{e}");
    no_mode.push(("WALCAST_AUTH_MODE", "none"));
    assert!(
        Config::load(&cli, &env_of(&no_mode)).is_ok(),
        "none on purpose"
    );
    assert_eq!(
        config.database_url.as_deref(),
        Some("postgres://u:pw@db:5432/app")
    );
    assert_eq!(config.replication.slot, "from_env");
    assert!(config.replication.temporary);
    assert_eq!(config.tables.allow, ["public.*", "sales.orders"]);
    assert_eq!(config.sessions.queue_capacity, 7);
    assert_eq!(config.log.level, "debug");
    assert_eq!(config.log.format, "json");
    assert_eq!(config.embedded.pg_bin, PathBuf::from("/opt/pg/bin"));
    assert_eq!(config.embedded.data_dir, Some(PathBuf::from("/var/tmp/pg")));
    let pg = config.pg_config().expect("pg config");
    assert_eq!(pg.get_dbname(), Some("app"));
}

#[test]
fn cli_overrides_env() {
    let args = "walcast --listen 127.0.0.1:9900 --database-url postgres://cli@h/db \
                --slot from_cli --temporary-slot --tables a.*,b.c --tables d.e \
                --queue-capacity 3 --log warn --log-format text --no-demo \
                --plugin-dir /srv/cli-plugins";
    let cli = Cli::try_parse_from(args.split_whitespace()).unwrap();
    let env = env_of(&[
        ("DATABASE_URL", "postgres://env@h/db"),
        ("WALCAST_LISTEN", "0.0.0.0:8800"),
        ("WALCAST_SLOT", "from_env"),
        ("WALCAST_TABLES", "x.y"),
        ("WALCAST_QUEUE_CAPACITY", "7"),
        ("WALCAST_LOG", "debug"),
        ("WALCAST_LOG_FORMAT", "json"),
        ("WALCAST_PLUGIN_DIR", "/srv/env-plugins"),
        ("RUST_LOG", "trace"),
    ]);
    let config = Config::load(&cli, &env).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:9900");
    assert_eq!(
        config.plugins.dir.as_deref(),
        Some(Path::new("/srv/cli-plugins"))
    );
    assert_eq!(config.database_url.as_deref(), Some("postgres://cli@h/db"));
    assert_eq!(config.replication.slot, "from_cli");
    assert!(config.replication.temporary);
    assert_eq!(config.tables.allow, ["a.*", "b.c", "d.e"]);
    assert_eq!(config.sessions.queue_capacity, 3);
    assert_eq!(config.log.level, "warn");
    assert_eq!(config.log.format, "text");
    assert!(!config.embedded.demo);
}

#[test]
fn missing_config_file_is_named() {
    let cli = Cli {
        config: Some(PathBuf::from("/nonexistent/walcast.toml")),
        ..Cli::default()
    };
    let err = Config::load(&cli, &no_env).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/walcast.toml"),
        "{err}"
    );
}

#[test]
fn validation_messages_name_key_and_fix() {
    type Edit = fn(&mut Config);
    #[rustfmt::skip]
    let cases: [(Edit, &str, &str); 11] = [
        (|c| c.replication.slot = "My Slot".into(), "replication.slot",
         "\"My Slot\" is not a valid slot name; use lowercase letters, digits and underscores (max 63)"),
        (|c| c.replication.slot = "a".repeat(64), "replication.slot", "max 63"),
        (|c| c.replication.slot.clear(), "replication.slot", "not a valid slot name"),
        (|c| c.sessions.queue_capacity = 0, "sessions.queue_capacity", "at least 1"),
        (|c| c.plugins.max_instances = 2, "plugins.max_instances", "between 4 and 100000"),
        (|c| c.replication.status_interval = Duration::ZERO, "replication.status_interval",
         "greater than zero"),
        (|c| c.replication.max_backoff = Duration::ZERO, "replication.max_backoff",
         "greater than zero"),
        (|c| c.tables.allow = vec!["public.*".into(), "sales.[orders".into()],
         "tables.allow[1]", "not a valid glob"),
        (|c| c.log.format = "xml".into(), "log.format", "use \"text\" or \"json\""),
        (|c| c.log.level = "info,walcast=loud".into(), "log.level", "not a valid log filter"),
        (|c| c.database_url = Some("postgres://u:pw@h:notaport/db".into()), "database_url",
         "not a valid Postgres connection string"),
    ];
    for (edit, key, needle) in cases {
        let mut config = Config::default();
        edit(&mut config);
        let (k, message) = invalid_key(config.validate().unwrap_err());
        assert_eq!(k, key);
        assert!(message.contains(needle), "{key}: {message}");
    }
}

#[test]
fn bad_listen_and_numbers_name_their_source() {
    let env = env_of(&[("WALCAST_LISTEN", "localhost")]);
    let (key, message) = invalid_key(Config::load(&Cli::default(), &env).unwrap_err());
    assert_eq!(key, "WALCAST_LISTEN");
    assert!(message.contains("127.0.0.1:7700"), "{message}");

    let cli = Cli::try_parse_from(["walcast", "--queue-capacity", "lots"]).unwrap();
    let (key, _) = invalid_key(Config::load(&cli, &no_env).unwrap_err());
    assert_eq!(key, "--queue-capacity");

    let env = env_of(&[("WALCAST_TEMPORARY_SLOT", "maybe")]);
    let (key, _) = invalid_key(Config::load(&Cli::default(), &env).unwrap_err());
    assert_eq!(key, "WALCAST_TEMPORARY_SLOT");

    let err = Config::from_toml_str("listen = \"nowhere\"\n").unwrap_err();
    assert!(
        err.contains("nowhere") && err.contains("host:port"),
        "{err}"
    );
}

#[test]
fn listen_takes_a_host_name() {
    // `localhost` is in /etc/hosts: no DNS server is asked.
    let file = Config::from_toml_str("listen = \"localhost:7701\"\n").unwrap();
    let env = env_of(&[("WALCAST_LISTEN", "localhost:7702")]);
    let from_env = Config::load(&Cli::default(), &env).unwrap();
    let cli = Cli::try_parse_from(["walcast", "--listen", "localhost:7703"]).unwrap();
    let from_cli = Config::load(&cli, &no_env).unwrap();
    for (config, port) in [(&file, 7701), (&from_env, 7702), (&from_cli, 7703)] {
        assert!(config.listen.ip().is_loopback(), "{}", config.listen);
        assert_eq!(config.listen.port(), port);
    }
    // A loopback name needs no auth.mode, as a loopback address does.
    assert_eq!(from_env.auth_mode(), AuthMode::None);
    let (key, message) = invalid_key(
        Config::load(
            &Cli::default(),
            &env_of(&[("WALCAST_LISTEN", "localhost:port")]),
        )
        .unwrap_err(),
    );
    assert_eq!(key, "WALCAST_LISTEN");
    assert!(message.contains("localhost:7700"), "{message}");
}

#[test]
fn bad_database_url_does_not_echo_password() {
    let mut config = Config {
        database_url: Some("postgres://u:hunter2@h:notaport/db".into()),
        ..Config::default()
    };
    let err = config.validate().unwrap_err().to_string();
    assert!(!err.contains("hunter2"), "{err}");
    config.database_url = Some("host=h password=hunter2 port=notaport".into());
    let err = config.validate().unwrap_err().to_string();
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn debug_redacts_password() {
    let mut config = Config {
        database_url: Some("postgres://walcast:s3cret@db:5432/app?sslmode=prefer".into()),
        ..Config::default()
    };
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(
        debug.contains("postgres://walcast:***@db:5432/app?sslmode=prefer"),
        "{debug}"
    );

    config.database_url = Some("host=db user=walcast password='s3 cret' dbname=app".into());
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3 cret"), "{debug}");
    assert!(debug.contains("password=*** dbname=app"), "{debug}");

    assert_eq!(
        redact_database_url("postgres://walcast@db/app"),
        "postgres://walcast@db/app"
    );
}

#[test]
fn table_globs_match_schema_dot_table() {
    let tables = TablesConfig {
        allow: vec!["public.*".into(), "sales.orders".into()],
    };
    let set = tables.glob_set().unwrap();
    assert!(set.is_match("public.people"));
    assert!(set.is_match("sales.orders"));
    assert!(!set.is_match("sales.customers"));
}

#[test]
fn rust_log_overrides_walcast_log_and_the_file() {
    let cli = Cli::try_parse_from(["walcast"]).unwrap();
    let env = env_of(&[("WALCAST_LOG", "debug"), ("RUST_LOG", "walcast=trace")]);
    assert_eq!(Config::load(&cli, &env).unwrap().log.level, "walcast=trace");
    let env = env_of(&[("WALCAST_LOG", "debug"), ("RUST_LOG", "")]);
    assert_eq!(
        Config::load(&cli, &env).unwrap().log.level,
        "debug",
        "an empty RUST_LOG is ignored"
    );
}

/// A self-signed EC certificate for `localhost` and its key, plus a second key, made with the
/// openssl CLI (as the source tests' TLS cluster).
fn openssl_pair(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (cert, key, other_key) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("other.pem"),
    );
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-days",
            "1",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .args(ec)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .arg("-out")
        .arg(&other_key)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");
    (cert, key, other_key)
}

#[test]
fn tls_section_from_file_and_env_with_checked_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, other_key) = openssl_pair(dir.path());

    let example = Config::from_toml_str(EXAMPLE).unwrap();
    assert!(example.tls.files().is_none(), "TLS is off by default");
    assert_eq!(example.tls.reload_interval, Duration::from_secs(5));

    // From the file, then overridden by the environment.
    let toml = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nreload_interval = \"500ms\"\n",
        cert.display().to_string(),
        other_key.display().to_string()
    );
    let mut config = Config::from_toml_str(&toml).unwrap();
    assert_eq!(config.tls.reload_interval, Duration::from_millis(500));
    let (k, message) = invalid_key(config.validate().unwrap_err());
    assert_eq!(k, "tls.key_file", "{message}");
    assert!(message.contains("does not belong"), "{message}");
    config
        .apply_env(&env_of(&[("WALCAST_TLS_KEY", key.to_str().unwrap())]))
        .unwrap();
    config.validate().expect("matching pair");
    assert_eq!(config.tls.files(), Some((cert.as_path(), key.as_path())));

    // Both or neither.
    let only_cert = Config::from_toml_str(&format!(
        "[tls]\ncert_file = {:?}\n",
        cert.display().to_string()
    ))
    .unwrap();
    let (k, message) = invalid_key(only_cert.validate().unwrap_err());
    assert_eq!(k, "tls.key_file");
    assert!(message.contains("set both"), "{message}");
    let mut only_key = Config::default();
    only_key
        .apply_env(&env_of(&[("WALCAST_TLS_KEY", key.to_str().unwrap())]))
        .unwrap();
    assert_eq!(
        invalid_key(only_key.validate().unwrap_err()).0,
        "tls.cert_file"
    );

    // Unreadable and not-PEM files name the key and the file.
    let mut missing = config.clone();
    missing.tls.cert_file = Some(dir.path().join("nope.pem"));
    let (k, message) = invalid_key(missing.validate().unwrap_err());
    assert_eq!(k, "tls.cert_file");
    assert!(
        message.contains("nope.pem") && message.contains("cannot read"),
        "{message}"
    );
    let mut swapped = config.clone();
    swapped.tls.cert_file = Some(key.clone());
    let (k, message) = invalid_key(swapped.validate().unwrap_err());
    assert_eq!(k, "tls.cert_file");
    assert!(message.contains("no PEM certificate"), "{message}");
    let mut not_a_key = config.clone();
    not_a_key.tls.key_file = Some(cert.clone());
    assert_eq!(
        invalid_key(not_a_key.validate().unwrap_err()).0,
        "tls.key_file"
    );
    let mut zero = config.clone();
    zero.tls.reload_interval = Duration::ZERO;
    assert_eq!(
        invalid_key(zero.validate().unwrap_err()).0,
        "tls.reload_interval"
    );
    assert!(Config::from_toml_str("[tls]\ncert = \"x\"\n")
        .unwrap_err()
        .contains("cert"));
}

#[test]
fn database_url_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _, _) = openssl_pair(dir.path());
    let mut config = Config {
        database_url: Some(format!(
            "postgres://u:hunter2@db.internal/app?sslmode=verify-full&sslrootcert={}",
            cert.display()
        )),
        ..Config::default()
    };
    config
        .validate()
        .expect("verify-full with a readable root certificate");
    let tls = config.pg_tls().unwrap();
    assert_eq!(tls.mode, crate::source::SslMode::VerifyFull);
    assert_eq!(tls.root_cert, crate::source::RootCert::File(cert.clone()));
    let pg = config.pg_config().unwrap();
    assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);

    config.database_url = Some(
        "postgres://u:hunter2@db/app?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem".into(),
    );
    let (k, message) = invalid_key(config.validate().unwrap_err());
    assert_eq!(k, "database_url");
    assert!(
        message.contains("/nonexistent/ca.pem") && !message.contains("hunter2"),
        "{message}"
    );

    config.database_url = Some("host=db user=u password=hunter2 sslmode=verify".into());
    let (k, message) = invalid_key(config.validate().unwrap_err());
    assert_eq!(k, "database_url");
    assert!(
        message.contains("verify-full") && !message.contains("hunter2"),
        "{message}"
    );

    // Without sslmode: prefer, unverified, as libpq.
    config.database_url = Some("postgres://u@db/app".into());
    config.validate().unwrap();
    assert_eq!(config.pg_tls().unwrap(), crate::source::PgTls::default());
}

#[test]
fn limits_section_defaults_file_env_and_validation() {
    let defaults = Config::from_toml_str("").unwrap();
    let example = Config::from_toml_str(EXAMPLE).expect("example parses");
    for config in [&defaults, &example] {
        let l = &config.limits;
        assert_eq!(
            (l.max_query_bytes, l.max_conditions, l.max_in_list),
            (16384, 32, 1000)
        );
        assert_eq!((l.max_like_pattern, l.max_groups_per_plugin), (1024, None));
        // The group cap defaults to a quarter of the instance pool.
        let limits = l.limits(&config.plugins);
        assert_eq!(limits.max_groups_per_plugin, Some(64));
        assert_eq!(limits.max_in_list, 1000);
    }
    let small_pool = Config::from_toml_str("[plugins]\nmax_instances = 40\n").unwrap();
    assert_eq!(
        small_pool
            .limits
            .limits(&small_pool.plugins)
            .max_groups_per_plugin,
        Some(10)
    );

    let mut config =
        Config::from_toml_str("[limits]\nmax_conditions = 8\nmax_groups_per_plugin = 3\n").unwrap();
    config.validate().unwrap();
    assert_eq!(config.limits.max_conditions, 8);
    assert_eq!(
        config.limits.limits(&config.plugins).max_groups_per_plugin,
        Some(3)
    );
    config
        .apply_env(&env_of(&[
            ("WALCAST_MAX_QUERY_BYTES", "2048"),
            ("WALCAST_MAX_CONDITIONS", "4"),
            ("WALCAST_MAX_IN_LIST", "10"),
            ("WALCAST_MAX_LIKE_PATTERN", "64"),
            ("WALCAST_MAX_GROUPS_PER_PLUGIN", "2"),
        ]))
        .unwrap();
    let l = config.limits.limits(&config.plugins);
    assert_eq!(
        (
            l.max_query_bytes,
            l.max_conditions,
            l.max_in_list,
            l.max_like_pattern,
            l.max_groups_per_plugin
        ),
        (2048, 4, 10, 64, Some(2))
    );

    let err = Config::from_toml_str("[limits]\nmax_in_lists = 3\n").unwrap_err();
    assert!(err.contains("max_in_lists"), "{err}");
    let (key, message) = invalid_key(
        config
            .apply_env(&env_of(&[("WALCAST_MAX_IN_LIST", "many")]))
            .unwrap_err(),
    );
    assert_eq!(key, "WALCAST_MAX_IN_LIST");
    assert!(message.contains("many"), "{message}");
    for (toml, key) in [
        ("max_query_bytes = 0", "limits.max_query_bytes"),
        ("max_conditions = 0", "limits.max_conditions"),
        ("max_in_list = 0", "limits.max_in_list"),
        ("max_like_pattern = 0", "limits.max_like_pattern"),
        ("max_groups_per_plugin = 0", "limits.max_groups_per_plugin"),
    ] {
        let config = Config::from_toml_str(&format!("[limits]\n{toml}\n")).unwrap();
        let (got, message) = invalid_key(config.validate().unwrap_err());
        assert_eq!(got, key);
        assert!(message.contains("at least 1"), "{message}");
    }
}

#[test]
fn public_hosts_and_trusted_proxies_come_from_env_and_are_checked() {
    let cli = Cli::default();
    let env = env_of(&[
        (
            "WALCAST_PUBLIC_HOSTS",
            "walcast.example.com, other.example:8443",
        ),
        (
            "WALCAST_TRUSTED_PROXIES",
            "10.0.0.0/8, 192.168.1.5, fd00::/8",
        ),
    ]);
    let config = Config::load(&cli, &env).unwrap();
    assert_eq!(
        config.http.public_hosts,
        ["walcast.example.com", "other.example:8443"]
    );
    let nets: Vec<String> = config
        .http
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.168.1.5/32", "fd00::/8"]);
    let bad = env_of(&[("WALCAST_TRUSTED_PROXIES", "10.0.0.0/33")]);
    let err = Config::load(&cli, &bad).unwrap_err().to_string();
    assert!(
        err.contains("WALCAST_TRUSTED_PROXIES") && err.contains("CIDR"),
        "{err}"
    );
    let from_file = Config::from_toml_str(
        "[http]\ntrusted_proxies = [\"127.0.0.1\", \"2001:db8::/32\"]\npublic_hosts = [\"*\"]\n",
    )
    .unwrap();
    assert_eq!(from_file.http.trusted_proxies.len(), 2);
    assert!(Config::from_toml_str("[http]\ntrusted_proxies = [\"proxy.internal\"]\n").is_err());
}

#[test]
fn socket_timeouts_defaults_file_env_and_validation() {
    let config = Config::from_toml_str("").unwrap();
    assert_eq!(config.sessions.write_timeout, Duration::from_secs(30));
    assert_eq!(config.sessions.ping_interval, Duration::from_secs(20));
    assert_eq!(config.sessions.idle_timeout, Duration::from_secs(60));
    let example = Config::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(example.sessions.write_timeout, Duration::from_secs(30));
    assert_eq!(example.sessions.idle_timeout, Duration::from_secs(60));

    let mut config = Config::from_toml_str(
        "[sessions]\nwrite_timeout = \"5s\"\nping_interval = \"1s\"\nidle_timeout = \"3s\"\n",
    )
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.sessions.write_timeout, Duration::from_secs(5));
    config
        .apply_env(&env_of(&[
            ("WALCAST_WRITE_TIMEOUT", "250ms"),
            ("WALCAST_PING_INTERVAL", "2s"),
            ("WALCAST_IDLE_TIMEOUT", "1m"),
        ]))
        .unwrap();
    config.validate().unwrap();
    assert_eq!(config.sessions.write_timeout, Duration::from_millis(250));
    assert_eq!(config.sessions.ping_interval, Duration::from_secs(2));
    assert_eq!(config.sessions.idle_timeout, Duration::from_secs(60));

    let (key, message) = invalid_key(
        Config::default()
            .apply_env(&env_of(&[("WALCAST_WRITE_TIMEOUT", "30")]))
            .unwrap_err(),
    );
    assert_eq!(key, "WALCAST_WRITE_TIMEOUT");
    assert!(message.contains("unit"), "{message}");

    let mut zero = Config::default();
    zero.sessions.write_timeout = Duration::ZERO;
    let (key, _) = invalid_key(zero.validate().unwrap_err());
    assert_eq!(key, "sessions.write_timeout");

    // An idle timeout no longer than the ping interval would close clients that answer pings.
    let mut tight = Config::default();
    tight.sessions.idle_timeout = tight.sessions.ping_interval;
    let (key, message) = invalid_key(tight.validate().unwrap_err());
    assert_eq!(key, "sessions.idle_timeout");
    assert!(message.contains("ping_interval"), "{message}");
}
