//! The four string formats of the form profile: `email`, `uri`, `date`, `date-time`.
//!
//! Each check follows the RFC named by JSON Schema 2020-12 for the format, in the
//! ASCII subset (internationalized forms are other formats: `idn-email`, `iri`).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A string format the form profile allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// RFC 5321 mailbox (`local@domain`).
    Email,
    /// RFC 3986 URI (absolute, with a scheme).
    Uri,
    /// RFC 3339 `full-date`.
    Date,
    /// RFC 3339 `date-time`.
    DateTime,
}

impl Format {
    pub(crate) fn parse(s: &str) -> Option<Format> {
        match s {
            "email" => Some(Format::Email),
            "uri" => Some(Format::Uri),
            "date" => Some(Format::Date),
            "date-time" => Some(Format::DateTime),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Format::Email => "email",
            Format::Uri => "uri",
            Format::Date => "date",
            Format::DateTime => "date-time",
        }
    }

    pub(crate) fn matches(self, s: &str) -> bool {
        match self {
            Format::Email => is_email(s),
            Format::Uri => is_uri(s),
            Format::Date => is_full_date(s),
            Format::DateTime => is_date_time(s),
        }
    }
}

/// RFC 5321 `Mailbox`: a dot-atom or quoted local part, `@`, and a domain of
/// LDH labels or an address literal. At most 254 characters.
fn is_email(s: &str) -> bool {
    if s.len() > 254 || !s.is_ascii() {
        return false;
    }
    let Some(at) = s.rfind('@') else {
        return false;
    };
    let (local, domain) = (&s[..at], &s[at + 1..]);
    (is_dot_atom(local) || is_quoted_local(local)) && local.len() <= 64 && is_mail_domain(domain)
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|part| !part.is_empty() && part.bytes().all(is_atext))
}

fn is_quoted_local(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
        return false;
    }
    let mut escaped = false;
    for &c in &b[1..b.len() - 1] {
        if escaped {
            if !(32..=126).contains(&c) {
                return false;
            }
            escaped = false;
        } else if c == b'\\' {
            escaped = true;
        } else if c == b'"' || !(32..=126).contains(&c) {
            return false;
        }
    }
    !escaped
}

fn is_mail_domain(d: &str) -> bool {
    if let Some(inner) = d.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        return match inner.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => inner.parse::<std::net::Ipv4Addr>().is_ok(),
        };
    }
    is_hostname(d)
}

/// RFC 1123 host name: dot-separated labels of letters, digits and hyphens, each
/// 1 to 63 characters, not starting or ending with a hyphen; at most 253 in all.
fn is_hostname(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// RFC 3986 `URI`: `scheme ":" hier-part [ "?" query ] [ "#" fragment ]`, every
/// character unreserved, reserved or a valid percent-encoding, at most one `#`.
fn is_uri(s: &str) -> bool {
    let Some(colon) = s.find(':') else {
        return false;
    };
    let scheme = &s[..colon];
    let mut sb = scheme.bytes();
    let scheme_ok = sb.next().is_some_and(|b| b.is_ascii_alphabetic())
        && sb.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return false;
    }
    let rest = &s.as_bytes()[colon + 1..];
    let mut hashes = 0;
    let mut i = 0;
    while i < rest.len() {
        let b = rest[i];
        if b == b'%' {
            let hex = |j: usize| rest.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if b == b'#' {
            hashes += 1;
        }
        let allowed = b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b);
        if !allowed || hashes > 1 {
            return false;
        }
        i += 1;
    }
    // Brackets only enclose an IP literal, the whole host of an authority.
    let brackets = s.bytes().filter(|b| matches!(b, b'[' | b']')).count();
    let Some(auth) = s[colon + 1..].strip_prefix("//") else {
        return brackets == 0;
    };
    let end = auth.find(['/', '?', '#']).unwrap_or(auth.len());
    let (userinfo, host_port) = match auth[..end].split_once('@') {
        Some((u, h)) => (u, h),
        None => ("", &auth[..end]),
    };
    // `@` ends the userinfo, which has no brackets.
    if host_port.contains('@') || userinfo.contains(['[', ']']) {
        return false;
    }
    // The port, when present, is digits only; a host without brackets has no `:`.
    let port = match host_port.strip_prefix('[') {
        Some(literal) => match literal.split_once(']') {
            Some((ip, after)) => {
                if !is_ip_literal(ip) || brackets != 2 {
                    return false;
                }
                match after {
                    "" => "",
                    _ => match after.strip_prefix(':') {
                        Some(p) => p,
                        None => return false,
                    },
                }
            }
            None => return false,
        },
        None => {
            if brackets != 0 {
                return false;
            }
            match host_port.split_once(':') {
                Some((_, p)) if p.contains(':') => return false,
                Some((_, p)) => p,
                None => "",
            }
        }
    };
    port.bytes().all(|b| b.is_ascii_digit())
}

/// RFC 3986 `IP-literal` contents: an IPv6 address or `IPvFuture`
/// (`v` 1*HEXDIG `.` 1*( unreserved / sub-delims / `:` )).
fn is_ip_literal(s: &str) -> bool {
    if s.parse::<std::net::Ipv6Addr>().is_ok() {
        return true;
    }
    let Some(rest) = s.strip_prefix(['v', 'V']) else {
        return false;
    };
    let Some((version, tail)) = rest.split_once('.') else {
        return false;
    };
    !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_hexdigit())
        && !tail.is_empty()
        && tail
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b))
}

/// RFC 3339 `full-date`: `YYYY-MM-DD`, a real calendar day.
fn is_full_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// RFC 3339 `date-time`, for example `2026-11-26T07:00:00.123Z`.
fn is_date_time(s: &str) -> bool {
    // `get`, not `[..10]`: an answer is any string, and byte 10 of a non-ASCII
    // one can fall inside a character, where slicing would panic.
    s.len() >= 20
        && s.get(..10).is_some_and(is_full_date)
        && OffsetDateTime::parse(s, &Rfc3339).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in [
            "a@b.c",
            "first.last+tag@example.co.uk",
            "\"odd local\"@example.com",
            "x@[127.0.0.1]",
            "x@[IPv6:::1]",
            "user@localhost",
        ] {
            assert!(Format::Email.matches(ok), "{ok}");
        }
        for bad in [
            "",
            "plain",
            "@x.y",
            "a@",
            "a..b@x.y",
            ".a@x.y",
            "a@-x.y",
            "a@x..y",
            "a b@x.y",
            "é@x.y",
            "a@[300.1.1.1]",
        ] {
            assert!(!Format::Email.matches(bad), "{bad}");
        }
    }

    #[test]
    fn uris() {
        for ok in [
            "https://example.com/a?b=c#d",
            "mailto:bob@example.com",
            "urn:isbn:0451450523",
            "http://[::1]:8080/",
            "file:///etc/hosts",
            "http://h/%20x",
            "http://user:pw@[v1.fe80::a+en1]:80/",
            "http://[2001:db8::7]/c=GB?objectClass?one",
        ] {
            assert!(Format::Uri.matches(ok), "{ok}");
        }
        for bad in [
            "",
            "example.com",
            "/relative/path",
            "1http://x",
            "http://a b",
            "http://x/%zz",
            "http://x#a#b",
            "http://x:port/",
            "ht tp://x",
            "https://[@example.org/test.txt",
            "http://[zz]/",
            "http://x/a[b]",
            "http://a:80:90/",
            "urn:a[b]",
        ] {
            assert!(!Format::Uri.matches(bad), "{bad}");
        }
    }

    #[test]
    fn dates() {
        for ok in ["2026-11-26", "2024-02-29", "2000-02-29", "0001-01-01"] {
            assert!(Format::Date.matches(ok), "{ok}");
        }
        for bad in [
            "2026-13-01",
            "2026-02-29",
            "1900-02-29",
            "2026-1-01",
            "26-11-26",
            "2026-11-26T00:00:00Z",
            "2026-04-31",
        ] {
            assert!(!Format::Date.matches(bad), "{bad}");
        }
    }

    #[test]
    fn date_times() {
        for ok in [
            "2026-11-26T07:00:00.123Z",
            "2026-11-26T07:00:00+01:00",
            "2026-11-26t07:00:00z",
        ] {
            assert!(Format::DateTime.matches(ok), "{ok}");
        }
        for bad in [
            "2026-11-26",
            "2026-11-26T07:00:00",
            "2026-11-26 07:00",
            "2026-02-30T00:00:00Z",
            "yesterday",
        ] {
            assert!(!Format::DateTime.matches(bad), "{bad}");
        }
    }

    /// Multibyte characters around the byte offsets each check slices at (the
    /// date's 10 bytes, `@`, `:`, `//`, `]`) are refused, never a panic.
    #[test]
    fn multibyte_input_is_refused_without_panicking() {
        let date_times = [
            // byte 10 falls inside `é` (bytes 9 and 10)
            "2026-11-2é07:00:00.123Z",
            "2026-11-26é07:00:00Z",
            "ééééééééééééééééééééé",
            "2026-11-26T07:00:00.123Z\u{1F600}",
            "２０２６-11-26T07:00:00Z",
        ];
        for s in date_times {
            assert!(!Format::DateTime.matches(s), "{s}");
        }
        for s in ["2026-11-2é", "2026-1é-26", "éééée", "２０２６-11-26"] {
            assert!(!Format::Date.matches(s), "{s}");
        }
        for s in ["é@é", "a@é.com", "é\u{1F600}@x.y", "\"é\"@x.y", "a@[é]"] {
            assert!(!Format::Email.matches(s), "{s}");
        }
        for s in [
            "é:x",
            "http://é/",
            "http://[::1]é:80/",
            "http://hé:80/",
            "http://h:8é/",
            "ht\u{1F600}tp://x",
        ] {
            assert!(!Format::Uri.matches(s), "{s}");
        }
    }
}
