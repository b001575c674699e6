//! pfSense's REST client and what it sends where: two small HTTP servers on
//! loopback, the first answering every request with a redirect to the
//! second (as a web interface moved to another address, or a proxy in the
//! way, would). The client never follows it: the error names the redirect,
//! and the second server never sees a request, so neither the API key nor
//! the password reaches it. A plain `http://` base is refused unless
//! explicitly allowed.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pfsense::lb::LbError;
use pfsense::lb::rest::{Credentials, Rest};

/// A server on a free loopback port answering every request with
/// `answer`; the request heads it received.
fn server(answer: String) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = String::new();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            s.lock().unwrap().push(head);
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    (addr, seen)
}

#[test]
fn credentials_are_never_sent_across_a_redirect() {
    let (elsewhere, seen_elsewhere) = server(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"data\":[]}"
            .into(),
    );
    let (moved, seen_moved) = server(format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{elsewhere}/api/v2/services/haproxy/backends\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for creds in [
        Credentials::ApiKey("key-that-must-stay-0451".into()),
        Credentials::Basic {
            user: "admin".into(),
            password: "password-that-must-stay-0451".into(),
        },
    ] {
        let rest = Rest::new(&format!("http://{moved}"), creds.clone(), None, true).unwrap();
        let e = rt
            .block_on(rest.read(tokio::time::Instant::now() + Duration::from_secs(10)))
            .unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, LbError::Rest { status: 307, .. })
                && text.contains("not followed")
                && text.contains(&elsewhere.to_string()),
            "{creds:?}: {text}"
        );
        assert!(!text.contains("0451"), "no secret in the error: {text}");
    }
    let asked = seen_moved.lock().unwrap();
    assert!(!asked.is_empty(), "the first server was asked");
    assert!(
        asked.iter().any(|h| h
            .to_ascii_lowercase()
            .contains("x-api-key: key-that-must-stay-0451"))
            && asked
                .iter()
                .any(|h| h.to_ascii_lowercase().contains("authorization: basic")),
        "the configured server gets the credentials: {asked:?}"
    );
    assert!(
        seen_elsewhere.lock().unwrap().is_empty(),
        "the redirect's target was asked: {:?}",
        seen_elsewhere.lock().unwrap()
    );
}

#[test]
fn plain_http_is_refused_unless_allowed() {
    let creds = Credentials::ApiKey("k".into());
    let e = Rest::new("http://127.0.0.1:1", creds.clone(), None, false).unwrap_err();
    assert!(
        matches!(&e, LbError::Config(m) if m.contains("plain HTTP") && m.contains("allowPlainHttp")),
        "{e}"
    );
    assert!(Rest::new("http://127.0.0.1:1", creds.clone(), None, true).is_ok());
    assert!(Rest::new("https://127.0.0.1:1", creds.clone(), None, false).is_ok());
    assert!(Rest::new("ftp://127.0.0.1:1", creds, None, true).is_err());
}
