//! Credentials in URLs (`scheme://user:password@host/...`) are never
//! repeated: every URL that goes into an error, a probe error or a state
//! file goes through [`redact_url`], and error text from libraries through
//! [`redact_urls_in`].

use std::borrow::Cow;

/// What replaces the `user:password` part of a URL.
pub const REDACTED: &str = "***";

/// `url` with its user information (`user:password@`, or a bare token
/// before `@`) replaced by `***`; unchanged when it has none. Works on
/// strings that do not parse as URLs too (`user:pw@host:9090`).
pub fn redact_url(url: &str) -> Cow<'_, str> {
    if url.contains("://") {
        return redact_urls_in(url);
    }
    match authority_userinfo(url, 0) {
        Some(at) => Cow::Owned(format!("{REDACTED}{}", &url[at..])),
        None => Cow::Borrowed(url),
    }
}

/// Every `scheme://user:password@` in `text` with its user information
/// replaced by `***`.
pub fn redact_urls_in(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    let mut from = 0;
    while let Some(i) = text[from..].find("://") {
        let start = from + i + 3;
        if let Some(at) = authority_userinfo(text, start) {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = at;
        }
        from = start;
    }
    if copied == 0 {
        Cow::Borrowed(text)
    } else {
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }
}

/// Where the host part starts (the index of the `@`) when the authority
/// beginning at `start` has user information.
fn authority_userinfo(text: &str, start: usize) -> Option<usize> {
    let rest = &text[start..];
    // The authority ends at the path, query or fragment, or where the URL
    // ends inside a message (blank, quote, bracket of the prose around it;
    // an IPv6 literal's `[` `]` are part of it).
    let end = rest
        .find(|c: char| c.is_whitespace() || "/?#()<>\"'`,;{}".contains(c))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    authority.rfind('@').map(|at| start + at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_replaced_and_the_rest_kept() {
        assert_eq!(
            redact_url("http://scraper:s3cret@127.0.0.1:9090/"),
            "http://***@127.0.0.1:9090/"
        );
        assert_eq!(
            redact_url("https://TOKEN@prom.example/api?x=1"),
            "https://***@prom.example/api?x=1"
        );
        assert_eq!(
            redact_url("https://u:p@[fd00::1]:9090/x"),
            "https://***@[fd00::1]:9090/x"
        );
        assert_eq!(redact_url("user:pw@host:9090"), "***@host:9090");
        assert_eq!(
            redact_url("http://127.0.0.1:9090/"),
            "http://127.0.0.1:9090/"
        );
        assert!(matches!(
            redact_url("https://10.0.0.1:2379"),
            Cow::Borrowed(_)
        ));
        // An @ after the path is not user information.
        assert_eq!(
            redact_url("http://host/path@x?q=a@b"),
            "http://host/path@x?q=a@b"
        );
    }

    #[test]
    fn every_url_in_a_message_is_redacted() {
        let msg =
            "GET http://a:pw1@h1/x: error sending request for url (http://b:pw2@h2:1/y): refused";
        let got = redact_urls_in(msg);
        assert_eq!(
            got,
            "GET http://***@h1/x: error sending request for url (http://***@h2:1/y): refused"
        );
        assert!(!got.contains("pw1") && !got.contains("pw2"));
        assert_eq!(redact_urls_in("no url here"), "no url here");
    }
}
