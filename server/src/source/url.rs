//! Reads a DATABASE_URL (`postgres://` URL or libpq key/value string) into tokio-postgres's
//! `Config` plus the TLS settings tokio-postgres does not know: `sslmode=verify-ca|verify-full`
//! and `sslrootcert`. Those two keys are taken out of the string, everything else is left to
//! tokio-postgres's own parser. It does not connect or read the root certificate (tls.rs).

use std::path::PathBuf;
use std::str::FromStr;

use super::tls::{PgTls, RootCert, SslMode};

/// Parses `url`; the error is a message for the `database_url` key (it never echoes the
/// password: tokio-postgres's messages name keys, not values).
pub fn parse_database_url(url: &str) -> Result<(tokio_postgres::Config, PgTls), String> {
    let (rest, pairs) = match url_query(url) {
        Some(query_start) => take_url_params(url, query_start)?,
        None => take_keyword_params(url)?,
    };
    let mut tls = PgTls::default();
    for (key, value) in pairs {
        match key.as_str() {
            "sslmode" => {
                tls.mode = SslMode::parse(&value).ok_or_else(|| {
                    format!(
                        "sslmode={value:?} is not supported; use disable, prefer, require, \
                         verify-ca or verify-full"
                    )
                })?;
            }
            _ => {
                tls.root_cert = match value.as_str() {
                    "" => RootCert::Unset,
                    "system" => RootCert::System,
                    path => RootCert::File(PathBuf::from(path)),
                };
            }
        }
    }
    tls.check()?;
    let mut pg = tokio_postgres::Config::from_str(&rest).map_err(|e| e.to_string())?;
    pg.ssl_mode(tls.mode.negotiation());
    Ok((pg, tls))
}

/// The keys taken out of the string.
fn ours(key: &str) -> bool {
    matches!(key, "sslmode" | "sslrootcert")
}

/// Byte offset of the query (after `?`) of a URL-form string; `None` for the key/value form.
/// Like tokio-postgres, the credentials run to the first `@`, and the query starts at the first
/// `?` after them.
fn url_query(url: &str) -> Option<Option<usize>> {
    let rest_start = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|prefix| url.starts_with(prefix).then_some(prefix.len()))?;
    let after_creds = url[rest_start..]
        .find('@')
        .map_or(rest_start, |at| rest_start + at + 1);
    Some(url[after_creds..].find('?').map(|q| after_creds + q + 1))
}

/// Removes our keys from a URL's query; returns the rest and the removed (decoded) pairs.
fn take_url_params(
    url: &str,
    query_start: Option<usize>,
) -> Result<(String, Vec<(String, String)>), String> {
    let Some(start) = query_start else {
        return Ok((url.to_owned(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in url[start..].split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)?;
        if ours(&key) {
            taken.push((key, percent_decode(value)?));
        } else {
            kept.push(pair);
        }
    }
    let base = &url[..start - 1];
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, taken))
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} does not decode to UTF-8"))
}

/// Removes our keys from a key/value string (`host=db sslmode=verify-full ...`), parsed the way
/// tokio-postgres and libpq do (`key = value`, single quotes, backslash escapes). A string that
/// does not parse is handed on whole, so tokio-postgres reports the problem.
fn take_keyword_params(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut rest = String::with_capacity(text.len());
    let mut taken = Vec::new();
    let mut kept_from = 0;
    let mut it = KeywordParser { s: text, pos: 0 };
    loop {
        let start = it.pos;
        match it.pair() {
            Some(Some((key, value))) => {
                if ours(key) {
                    rest.push_str(&text[kept_from..start]);
                    kept_from = it.pos;
                    taken.push((key.to_owned(), value));
                }
            }
            Some(None) => break,
            None => return Ok((text.to_owned(), Vec::new())),
        }
    }
    rest.push_str(&text[kept_from..]);
    Ok((rest, taken))
}

struct KeywordParser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> KeywordParser<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// `Some(Some(pair))`, `Some(None)` at the end, `None` when the text does not parse.
    fn pair(&mut self) -> Option<Option<(&'a str, String)>> {
        self.skip_ws();
        let key_start = self.pos;
        while self.peek().is_some_and(|c| !c.is_whitespace() && c != '=') {
            self.bump();
        }
        let key = &self.s[key_start..self.pos];
        if key.is_empty() {
            return if self.peek().is_none() {
                Some(None)
            } else {
                None
            };
        }
        self.skip_ws();
        if self.bump() != Some('=') {
            return None;
        }
        self.skip_ws();
        let mut value = String::new();
        if self.peek() == Some('\'') {
            self.bump();
            loop {
                match self.bump()? {
                    '\'' => break,
                    '\\' => value.push(self.bump()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = self.peek().filter(|c| !c.is_whitespace()) {
                self.bump();
                if c == '\\' {
                    if let Some(escaped) = self.bump() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return None;
            }
        }
        Some(Some((key, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::config::{Host, SslMode as Pg};

    fn parse(url: &str) -> (tokio_postgres::Config, PgTls) {
        parse_database_url(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn url_form_verify_full_with_root_cert() {
        let (pg, tls) = parse(
            "postgres://walcast:p%40ss@db.internal:5433/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        );
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, RootCert::File("/etc/ca.pem".into()));
        assert_eq!(pg.get_ssl_mode(), Pg::Require);
        assert_eq!(pg.get_hosts(), [Host::Tcp("db.internal".into())]);
        assert_eq!(pg.get_ports(), [5433]);
        assert_eq!(pg.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(pg.get_application_name(), Some("x"));
        assert_eq!(pg.get_dbname(), Some("app"));
    }

    #[test]
    fn url_form_without_our_keys_is_untouched() {
        let (pg, tls) = parse("postgresql://u@h/db?sslmode=require");
        assert_eq!(
            tls,
            PgTls {
                mode: SslMode::Require,
                root_cert: RootCert::Unset
            }
        );
        assert_eq!(pg.get_ssl_mode(), Pg::Require);
        let (pg, tls) = parse("postgres://u@h:1/db");
        assert_eq!(tls, PgTls::default());
        assert_eq!(pg.get_ssl_mode(), Pg::Prefer);
        // A `?` in the password (before `@`) is not the query.
        let (pg, tls) = parse("postgres://u:a?b@h/db?sslmode=verify-ca");
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(pg.get_password(), Some(&b"a?b"[..]));
        // Only our keys: the `?` goes too.
        let (pg, _) = parse("postgres://u@h/db?sslrootcert=/ca.pem");
        assert_eq!(pg.get_dbname(), Some("db"));
    }

    #[test]
    fn keyword_form() {
        let (pg, tls) = parse(
            "host=localhost port=5432 user=walcast sslmode = verify-ca sslrootcert='/etc/my ca.pem' dbname=app",
        );
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.root_cert, RootCert::File("/etc/my ca.pem".into()));
        assert_eq!(pg.get_dbname(), Some("app"));
        assert_eq!(pg.get_user(), Some("walcast"));
        assert_eq!(pg.get_ssl_mode(), Pg::Require);
        let (_, tls) = parse(r"host=h user=u sslrootcert=/a\ b.pem sslmode=verify-full");
        assert_eq!(tls.root_cert, RootCert::File("/a b.pem".into()));
        let (_, tls) = parse("host=h user=u sslrootcert=system sslmode=verify-full");
        assert_eq!(tls.root_cert, RootCert::System);
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse_database_url("postgres://u@h/db?sslmode=verify").unwrap_err();
        assert!(
            err.contains("verify-full") && err.contains("\"verify\""),
            "{err}"
        );
        let err = parse_database_url("host=h sslmode=allow").unwrap_err();
        assert!(err.contains("\"allow\""), "{err}");
        let err =
            parse_database_url("postgres://u@h/db?sslrootcert=system&sslmode=require").unwrap_err();
        assert!(err.contains("sslrootcert=system"), "{err}");
        // Other problems are tokio-postgres's to report.
        assert!(parse_database_url("postgres://u@h/db?nosuchkey=1").is_err());
        assert!(parse_database_url("host='unterminated").is_err());
    }
}
