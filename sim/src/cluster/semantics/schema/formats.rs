//! String formats that kube-openapi's strfmt registry checks. Unknown formats pass.

use std::net::{Ipv4Addr, Ipv6Addr};

pub(crate) fn is_valid(format: &str, s: &str) -> bool {
    match format {
        "byte" => is_base64(s),
        "date" => is_date(s),
        "date-time" | "datetime" => is_date_time(s),
        "ipv4" => s.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(s),
        "uuid" => is_uuid(s),
        _ => true,
    }
}

fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len().is_multiple_of(4)
        && s.len() - body.len() <= 2
        && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_date(s: &str) -> bool {
    let p: Vec<&str> = s.split('-').collect();
    p.len() == 3 && digits(p[0], 4) && digits(p[1], 2) && digits(p[2], 2)
}

/// RFC 3339 date-time, accepting a lowercase `t`/`z`, a space separator and fractional seconds
/// as strfmt's loose parser does.
fn is_date_time(s: &str) -> bool {
    let Some(idx) = s.find(['T', 't', ' ']) else { return false };
    let (date, rest) = (&s[..idx], &s[idx + 1..]);
    if !is_date(date) || rest.len() < 8 {
        return false;
    }
    let (time, zone) = rest.split_at(8);
    let t: Vec<&str> = time.split(':').collect();
    if t.len() != 3 || !t.iter().all(|p| digits(p, 2)) {
        return false;
    }
    let zone = match zone.strip_prefix('.') {
        Some(z) => z.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => zone,
    };
    matches!(zone, "Z" | "z" | "")
        || (zone.len() == 6
            && matches!(&zone[..1], "+" | "-")
            && digits(&zone[1..3], 2)
            && digits(&zone[4..], 2)
            && &zone[3..4] == ":")
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else { return false };
    let Ok(bits) = bits.parse::<u8>() else { return false };
    (ip.parse::<Ipv4Addr>().is_ok() && bits <= 32) || (ip.parse::<Ipv6Addr>().is_ok() && bits <= 128)
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12].iter().zip(&parts).all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn formats_accept_and_reject() {
        assert!(is_valid("byte", "aGVsbG8="));
        assert!(!is_valid("byte", "not base64!"));
        assert!(is_valid("date-time", "2024-05-01T10:00:00Z"));
        assert!(is_valid("date-time", "2024-05-01T10:00:00.123+02:00"));
        assert!(!is_valid("date-time", "yesterday"));
        assert!(is_valid("cidr", "10.0.0.0/8"));
        assert!(!is_valid("ipv4", "300.1.1.1"));
        assert!(is_valid("uuid", "123e4567-e89b-12d3-a456-426614174000"));
        assert!(is_valid("unknown-format", "anything"));
    }
}
