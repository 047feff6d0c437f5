//! Unit tests for the config tree: file parsing, env and CLI precedence, validation messages,
//! duration parsing and password redaction.

use super::*;
use std::collections::HashMap;

const EXAMPLE: &str = include_str!("../../../walcast.example.toml");

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
        "/../walcast.example.toml"
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
    ]);
    let config = Config::load(&cli, &env).unwrap();
    assert_eq!(config.listen.to_string(), "0.0.0.0:8800");
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
    assert!(err.contains("nowhere") && err.contains("ip:port"), "{err}");
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
