//! conninfo: PostgreSQL connection strings in every form libpq accepts — URLs
//! (`postgres://user:password@host/db?password=...`) and key/value strings
//! (`host=h user=u password='p w'`) — read only to find, mask or take out a password.
//!
//! Invariant: a connection string reaches a log line, an error or the terminal only
//! through [`redacted`], so a password never appears in output in any form.

/// What replaces a password in output.
const MASK: &str = "***";

/// The connection string with every password replaced by `***`.
pub fn redacted(conninfo: &str) -> String {
    masked(conninfo).unwrap_or_else(|| {
        // Not a form this module understands: show nothing that could be a secret.
        "<a connection string that cannot be shown>".to_owned()
    })
}

/// Whether the connection string carries a password (in any position).
pub fn has_password(conninfo: &str) -> bool {
    let (_, password) = take_password(conninfo);
    password.is_some()
}

/// The connection string without its password, and the password (percent-decoded for
/// a URL). A connection string of no recognisable form comes back unchanged.
pub fn take_password(conninfo: &str) -> (String, Option<String>) {
    if is_url(conninfo) {
        url_parts(conninfo, None)
    } else {
        key_value_parts(conninfo, None)
    }
}

/// The string with its password masked; `None` when the form is unrecognisable.
fn masked(conninfo: &str) -> Option<String> {
    if is_url(conninfo) {
        Some(url_parts(conninfo, Some(MASK)).0)
    } else if conninfo.contains('=') || conninfo.trim().is_empty() {
        Some(key_value_parts(conninfo, Some(MASK)).0)
    } else {
        None
    }
}

fn is_url(conninfo: &str) -> bool {
    let lower = conninfo.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// A URL with its password (in the user info and in `password=` parameters) replaced
/// by `replacement`, or removed when it is `None`; and the password.
fn url_parts(url: &str, replacement: Option<&str>) -> (String, Option<String>) {
    let scheme_end = url.find("://").map_or(0, |at| at + 3);
    let (head, rest) = url.split_at(scheme_end);
    // The user info ends at the last `@` before the path or query: a raw `@` or `/` in a
    // password is not valid in a URL, but people write them, and masking must not fail
    // open on them.
    let query_at = rest.find('?').unwrap_or(rest.len());
    let (authority_and_path, query) = rest.split_at(query_at);
    let mut password = None;
    let mut out = String::from(head);
    match authority_and_path.rfind('@') {
        Some(at) => {
            let (userinfo, host_and_path) = authority_and_path.split_at(at);
            match userinfo.split_once(':') {
                Some((user, secret)) => {
                    password = Some(percent_decode(secret));
                    out.push_str(user);
                    if let Some(mask) = replacement {
                        out.push(':');
                        out.push_str(mask);
                    }
                }
                None => out.push_str(userinfo),
            }
            out.push_str(host_and_path);
        }
        None => out.push_str(authority_and_path),
    }
    if let Some(parameters) = query.strip_prefix('?') {
        let mut kept = Vec::new();
        for parameter in parameters.split('&') {
            match parameter.split_once('=') {
                Some((key, value)) if key.eq_ignore_ascii_case("password") => {
                    password = Some(percent_decode(value));
                    if let Some(mask) = replacement {
                        kept.push(format!("{key}={mask}"));
                    }
                }
                _ => kept.push(parameter.to_owned()),
            }
        }
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    (out, password)
}

/// A key/value connection string with its `password` value replaced by `replacement`
/// (the pair removed when it is `None`); and the password. Values may be single-quoted
/// with backslash escapes, as libpq reads them.
fn key_value_parts(conninfo: &str, replacement: Option<&str>) -> (String, Option<String>) {
    let mut pairs: Vec<String> = Vec::new();
    let mut password = None;
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            // A bare word: not a pair; keep it as written.
            pairs.push(key);
            continue;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let (value, written) = read_value(&mut chars);
        if key.eq_ignore_ascii_case("password") {
            password = Some(value);
            if let Some(mask) = replacement {
                pairs.push(format!("{key}={mask}"));
            }
        } else {
            pairs.push(format!("{key}={written}"));
        }
    }
    (pairs.join(" "), password)
}

/// One value: its meaning, and its text as written.
fn read_value(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> (String, String) {
    let mut value = String::new();
    let mut written = String::new();
    if chars.next_if_eq(&'\'').is_some() {
        written.push('\'');
        while let Some(c) = chars.next() {
            written.push(c);
            match c {
                '\\' => {
                    if let Some(escaped) = chars.next() {
                        written.push(escaped);
                        value.push(escaped);
                    }
                }
                '\'' => break,
                other => value.push(other),
            }
        }
    } else {
        while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
            if c == '\\' {
                written.push(c);
                if let Some(escaped) = chars.next() {
                    written.push(escaped);
                    value.push(escaped);
                }
            } else {
                written.push(c);
                value.push(c);
            }
        }
    }
    (value, written)
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form libpq accepts that can carry a password, with the secret `s3cr3t`.
    const WITH_PASSWORD: &[&str] = &[
        "postgres://loader:s3cr3t@db.example.com:5432/analytics",
        "postgresql://loader:s3cr3t@db.example.com/analytics?sslmode=require",
        "postgres://loader:s3cr3t@host-a:5432,host-b:5433/analytics",
        "postgres://loader@db.example.com/analytics?password=s3cr3t",
        "postgres://loader@db.example.com/analytics?sslmode=require&password=s3cr3t&application_name=x",
        "postgres://loader@db.example.com/analytics?PASSWORD=s3cr3t",
        "postgres://loader:s3cr3t@/analytics?host=/var/run/postgresql",
        "POSTGRES://loader:s3cr3t@db.example.com/analytics",
        "postgres://loader:s3cr3t%40x@db.example.com/analytics",
        "postgres://loader:s3cr3t@x@db.example.com/analytics",
        "postgres://loader:s3cr3t/x@db.example.com/analytics",
        "host=db.example.com user=loader password=s3cr3t dbname=analytics",
        "host=db.example.com password = s3cr3t dbname=analytics",
        "host=db.example.com password='s3cr3t with spaces' dbname=analytics",
        "password='s3cr3t \\'quoted\\'' host=db.example.com",
        "host=db.example.com PASSWORD=s3cr3t",
    ];

    #[test]
    fn a_password_in_any_form_is_found_and_masked() {
        for conninfo in WITH_PASSWORD {
            assert!(has_password(conninfo), "{conninfo}");
            let shown = redacted(conninfo);
            assert!(!shown.contains("s3cr3t"), "{conninfo} shown as {shown}");
            assert!(shown.contains(MASK), "{conninfo} shown as {shown}");
            let (without, password) = take_password(conninfo);
            assert!(!without.contains("s3cr3t"), "{conninfo} became {without}");
            assert!(
                password.is_some_and(|p| p.starts_with("s3cr3t")),
                "{conninfo}"
            );
        }
    }

    #[test]
    fn taking_the_password_out_keeps_the_rest() {
        assert_eq!(
            take_password("postgres://loader:p%40ss@db:5432/analytics?sslmode=require"),
            (
                "postgres://loader@db:5432/analytics?sslmode=require".to_owned(),
                Some("p@ss".to_owned())
            )
        );
        assert_eq!(
            take_password("postgres://loader@db/analytics?password=pw&sslmode=require"),
            (
                "postgres://loader@db/analytics?sslmode=require".to_owned(),
                Some("pw".to_owned())
            )
        );
        assert_eq!(
            take_password("host=db password='a b\\'c' dbname=x"),
            ("host=db dbname=x".to_owned(), Some("a b'c".to_owned()))
        );
    }

    #[test]
    fn strings_without_a_password_are_shown_as_written() {
        for conninfo in [
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgres://db.example.com/analytics?sslmode=require",
            "host=/var/run/postgresql dbname=analytics",
        ] {
            assert!(!has_password(conninfo), "{conninfo}");
            assert_eq!(redacted(conninfo), conninfo);
        }
    }

    #[test]
    fn an_unrecognisable_string_is_not_shown() {
        assert!(!redacted("s3cr3t").contains("s3cr3t"));
    }
}
