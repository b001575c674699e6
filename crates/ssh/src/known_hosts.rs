//! OpenSSH `known_hosts`: plain and hashed (`|1|salt|hmac`) host
//! patterns, `[host]:port` for ports other than 22, `*`/`?` wildcards and
//! `!` negations, the `@revoked` marker (`@cert-authority` lines are
//! skipped: host certificates are not accepted), line numbers as editors
//! count them (comments and blank lines included).

use std::fs::{self, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit as _, Mac as _};
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;

/// What known_hosts says about a host and the key it presented.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A line records this key for this host.
    Known {
        /// The line (1-based).
        line: usize,
    },
    /// A line records another key of the same type for this host.
    Changed {
        /// The line (1-based).
        line: usize,
        /// The recorded key's SHA256 fingerprint.
        expected_fingerprint: String,
    },
    /// The key is marked `@revoked`.
    Revoked {
        /// The line (1-based).
        line: usize,
    },
    /// No line records a key of this type for this host.
    Unknown {
        /// Lines that record keys of other types for this host (line,
        /// type): the host is known, but not with this key type.
        other_types: Vec<(usize, String)>,
    },
}

/// The name known_hosts uses for a host: `host` on port 22, else
/// `[host]:port`.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_ascii_lowercase()
    } else {
        format!("[{}]:{port}", host.to_ascii_lowercase())
    }
}

/// `key`'s SHA256 fingerprint, `SHA256:...` as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// `*` and `?` wildcards, as OpenSSH's match_pattern.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// Whether one pattern entry (plain, wildcard or hashed) matches `name`.
fn entry_matches(entry: &str, name: &str) -> bool {
    if let Some(rest) = entry.strip_prefix("|1|") {
        let Some((salt, hash)) = rest.split_once('|') else {
            return false;
        };
        let (Ok(salt), Ok(hash)) = (
            BASE64.decode(salt.as_bytes()),
            BASE64.decode(hash.as_bytes()),
        ) else {
            return false;
        };
        let Ok(mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
            return false;
        };
        return mac
            .chain_update(name.as_bytes())
            .verify_slice(&hash)
            .is_ok();
    }
    glob(entry.to_ascii_lowercase().as_bytes(), name.as_bytes())
}

/// Whether a comma-separated host field matches `name`: some positive
/// entry matches and no negated one does.
fn hosts_match(field: &str, name: &str) -> bool {
    let mut matched = false;
    for entry in field.split(',') {
        if let Some(neg) = entry.strip_prefix('!') {
            if entry_matches(neg, name) {
                return false;
            }
        } else if entry_matches(entry, name) {
            matched = true;
        }
    }
    matched
}

/// A parsed line: (marker, hosts, key type, key).
type Line<'a> = (Option<&'a str>, &'a str, &'a str, PublicKey);

/// A parsed line. None for comments, blank lines and lines whose key does
/// not parse (OpenSSH skips them).
fn parse_line(line: &str) -> Option<Line<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut f = line.split_whitespace();
    let mut first = f.next()?;
    let mut marker = None;
    if first.starts_with('@') {
        marker = Some(first);
        first = f.next()?;
    }
    let kind = f.next()?;
    let b64 = f.next()?;
    let key = russh::keys::parse_public_key_base64(b64).ok()?;
    Some((marker, first, kind, key))
}

/// Check `key`, presented by `host:port`, against the known_hosts `text`.
///
/// A key marked `@revoked` on any line is refused wherever that line is,
/// even when another line (before or after it) records the same key as
/// known: as OpenSSH, which checks revocation before it looks for the key.
/// A revoked line applies whatever its host patterns say (stricter than
/// OpenSSH, which applies it to the hosts it names: a revoked key is
/// refused for every host).
pub fn check_text(text: &str, host: &str, port: u16, key: &PublicKey) -> Verdict {
    let name = host_pattern(host, port);
    let mut known = None;
    let mut changed = None;
    let mut other_types = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let Some((marker, hosts, kind, recorded)) = parse_line(raw) else {
            continue;
        };
        let same_key = recorded.key_data() == key.key_data();
        match marker {
            Some("@revoked") => {
                if same_key {
                    return Verdict::Revoked { line };
                }
                continue;
            }
            Some(_) => continue,
            None => {}
        }
        if !hosts_match(hosts, &name) {
            continue;
        }
        if same_key {
            // Not yet: a later line may revoke this key.
            known.get_or_insert(Verdict::Known { line });
            continue;
        }
        if recorded.algorithm() == key.algorithm() {
            changed.get_or_insert(Verdict::Changed {
                line,
                expected_fingerprint: fingerprint(&recorded),
            });
        } else {
            other_types.push((line, kind.to_string()));
        }
    }
    known
        .or(changed)
        .unwrap_or(Verdict::Unknown { other_types })
}

/// Check `key` against the file at `path` (a missing file knows no host).
pub fn check(path: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<Verdict> {
    match fs::read(path) {
        Ok(bytes) => Ok(check_text(
            &String::from_utf8_lossy(&bytes),
            host,
            port,
            key,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Verdict::Unknown {
            other_types: vec![],
        }),
        Err(e) => Err(e),
    }
}

/// The key types known_hosts records for `host:port` (to prefer them in
/// the key exchange, as OpenSSH does).
pub fn recorded_types(path: &Path, host: &str, port: u16) -> Vec<String> {
    let Ok(bytes) = fs::read(path) else {
        return vec![];
    };
    let name = host_pattern(host, port);
    let mut out: Vec<String> = Vec::new();
    for raw in String::from_utf8_lossy(&bytes).lines() {
        if let Some((None, hosts, kind, _)) = parse_line(raw)
            && hosts_match(hosts, &name)
            && !out.iter().any(|k| k == kind)
        {
            out.push(kind.to_string());
        }
    }
    out
}

/// Append `host:port key` to the file at `path` (created 0600, its
/// directory 0700, if missing); the line number written.
pub fn record(path: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<usize> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let mut text = Vec::new();
    f.seek(SeekFrom::Start(0))?;
    f.read_to_end(&mut text)?;
    let mut line = String::new();
    if !text.is_empty() && !text.ends_with(b"\n") {
        line.push('\n');
    }
    let openssh = key
        .to_openssh()
        .map_err(|e| std::io::Error::other(format!("encoding the key: {e}")))?;
    // Type and base64 only (the comment a key may carry is not ours).
    let fields: Vec<&str> = openssh.split_whitespace().take(2).collect();
    line.push_str(&format!(
        "{} {}\n",
        host_pattern(host, port),
        fields.join(" ")
    ));
    f.write_all(line.as_bytes())?;
    f.flush()?;
    let before = text.iter().filter(|b| **b == b'\n').count();
    Ok(before + usize::from(!text.is_empty() && !text.ends_with(b"\n")) + 1)
}

/// Fuzzing entry point, shared by the `cargo fuzz` target
/// (`fuzz/fuzz_targets/known_hosts.rs`) and the corpus replay test
/// (`tests/fuzz_corpus.rs`), so both run exactly the same code. Not a
/// stable API.
///
/// The bytes are a known_hosts file (read as `check` reads one). Every key
/// it records, and two fixed keys, are checked for a few host names (fixed
/// ones, and the plain names the file itself lists), and each verdict is
/// checked against the lines: a key revoked on any line is `Revoked` at
/// the first such line whatever else the file says; `Known` and `Changed`
/// name a line without a marker that matches the host and holds that key
/// (or another of its type). Returns whether any line records a key;
/// panics only on a bug.
pub fn fuzz(data: &[u8]) -> bool {
    const FIXED: [&str; 2] = [
        "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ",
        "AAAAC3NzaC1lZDI1NTE5AAAAIA6rWI3G1sz07DnfFlrouTcysQlj2P+jpNSOEWD9OJ3X",
    ];
    let text = String::from_utf8_lossy(data);
    let lines: Vec<Option<Line<'_>>> = text.lines().map(parse_line).collect();
    let mut keys: Vec<PublicKey> = FIXED
        .iter()
        .filter_map(|k| russh::keys::parse_public_key_base64(k).ok())
        .collect();
    let mut hosts: Vec<(String, u16)> = vec![("h1".into(), 22), ("127.0.0.9".into(), 2200)];
    for (_, field, _, key) in lines.iter().flatten() {
        if keys.len() < 6 && !keys.iter().any(|k| k.key_data() == key.key_data()) {
            keys.push(key.clone());
        }
        for entry in field.split(',').take(2) {
            if hosts.len() >= 6 || entry.starts_with(['|', '!']) || entry.contains(['*', '?']) {
                continue;
            }
            let (host, port) = match entry
                .strip_prefix('[')
                .and_then(|r| r.split_once("]:"))
                .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            {
                Some((h, p)) => (h.to_string(), p),
                None => (entry.to_string(), 22),
            };
            hosts.push((host, port));
        }
    }
    for (host, port) in &hosts {
        let name = host_pattern(host, *port);
        for key in &keys {
            let revoked_at = lines.iter().enumerate().find_map(|(i, l)| match l {
                Some((Some("@revoked"), _, _, k)) if k.key_data() == key.key_data() => Some(i + 1),
                _ => None,
            });
            let plain = |line: usize| -> &Line<'_> {
                let l = lines[line - 1].as_ref().expect("the verdict's line parses");
                assert!(l.0.is_none(), "line {line} has a marker: {:?}", l.0);
                assert!(hosts_match(l.1, &name), "line {line} is not for {name}");
                l
            };
            match check_text(&text, host, *port, key) {
                Verdict::Revoked { line } => assert_eq!(Some(line), revoked_at),
                v => {
                    assert_eq!(revoked_at, None, "a revoked key got {v:?}");
                    match v {
                        Verdict::Known { line } => {
                            assert!(plain(line).3.key_data() == key.key_data())
                        }
                        Verdict::Changed { line, .. } => {
                            let l = plain(line);
                            assert!(l.3.key_data() != key.key_data());
                            assert_eq!(l.3.algorithm(), key.algorithm());
                        }
                        Verdict::Unknown { other_types } => {
                            for (line, kind) in other_types {
                                assert_eq!(plain(line).2, kind);
                            }
                        }
                        Verdict::Revoked { .. } => unreachable!(),
                    }
                }
            }
        }
    }
    lines.iter().any(Option::is_some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const K2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIA6rWI3G1sz07DnfFlrouTcysQlj2P+jpNSOEWD9OJ3X";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).unwrap()
    }

    #[test]
    fn plain_bracketed_wildcard_negated() {
        let text = format!(
            "# comment\n\n[10.0.0.1]:2222 ssh-ed25519 {K1}\nfw1,10.0.0.2 ssh-ed25519 {K2}\n*.lab,!bad.lab ssh-ed25519 {K1}\n"
        );
        assert_eq!(
            check_text(&text, "10.0.0.1", 2222, &key(K1)),
            Verdict::Known { line: 3 }
        );
        // Port 22 is written without brackets; another port is another name.
        assert_eq!(
            check_text(&text, "10.0.0.1", 22, &key(K1)),
            Verdict::Unknown {
                other_types: vec![]
            }
        );
        assert_eq!(
            check_text(&text, "FW1", 22, &key(K2)),
            Verdict::Known { line: 4 }
        );
        match check_text(&text, "10.0.0.2", 22, &key(K1)) {
            Verdict::Changed {
                line: 4,
                expected_fingerprint,
            } => {
                assert_eq!(expected_fingerprint, fingerprint(&key(K2)))
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(
            check_text(&text, "m1.lab", 22, &key(K1)),
            Verdict::Known { line: 5 }
        );
        assert_eq!(
            check_text(&text, "bad.lab", 22, &key(K1)),
            Verdict::Unknown {
                other_types: vec![]
            }
        );
    }

    #[test]
    fn hashed_and_revoked() {
        // The hashed entry for "[localhost]:13265"-style names is
        // HMAC-SHA1(salt, name); build one as ssh-keygen -H would.
        let salt = b"0123456789abcdefghij";
        let mac = Hmac::<Sha1>::new_from_slice(salt)
            .unwrap()
            .chain_update(b"[127.0.0.9]:2200")
            .finalize()
            .into_bytes();
        let hashed = format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(&mac));
        let text = format!("{hashed} ssh-ed25519 {K1}\n@revoked * ssh-ed25519 {K2}\n");
        assert_eq!(
            check_text(&text, "127.0.0.9", 2200, &key(K1)),
            Verdict::Known { line: 1 }
        );
        assert!(matches!(
            check_text(&text, "127.0.0.10", 2200, &key(K1)),
            Verdict::Unknown { .. }
        ));
        assert_eq!(
            check_text(&text, "127.0.0.9", 2200, &key(K2)),
            Verdict::Revoked { line: 2 }
        );
    }

    #[test]
    fn a_revoked_key_is_refused_even_where_another_line_knows_it() {
        // Known on line 1, revoked on line 3: OpenSSH refuses it; so do we.
        let text = format!(
            "h1 ssh-ed25519 {K1}\n# revoked after the compromise\n@revoked * ssh-ed25519 {K1}\n"
        );
        assert_eq!(
            check_text(&text, "h1", 22, &key(K1)),
            Verdict::Revoked { line: 3 }
        );
        // Revoked first, known after: the same.
        let text = format!("@revoked h1 ssh-ed25519 {K1}\nh1 ssh-ed25519 {K1}\n");
        assert_eq!(
            check_text(&text, "h1", 22, &key(K1)),
            Verdict::Revoked { line: 1 }
        );
        // A hashed known line and a revoked one for the same key.
        let salt = b"salt-of-twenty-bytes";
        let mac = Hmac::<Sha1>::new_from_slice(salt)
            .unwrap()
            .chain_update(b"h1")
            .finalize()
            .into_bytes();
        let hashed = format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(&mac));
        let text = format!("{hashed} ssh-ed25519 {K1}\n@revoked * ssh-ed25519 {K1}\n");
        assert_eq!(
            check_text(&text, "h1", 22, &key(K1)),
            Verdict::Revoked { line: 2 }
        );
        // Another key's revocation leaves this one known; an
        // @cert-authority line is not a known key.
        let text = format!(
            "@cert-authority * ssh-ed25519 {K1}\nh1 ssh-ed25519 {K1}\n@revoked * ssh-ed25519 {K2}\n"
        );
        assert_eq!(
            check_text(&text, "h1", 22, &key(K1)),
            Verdict::Known { line: 2 }
        );
        let text = format!("@cert-authority h1 ssh-ed25519 {K1}\n");
        assert_eq!(
            check_text(&text, "h1", 22, &key(K1)),
            Verdict::Unknown {
                other_types: vec![]
            }
        );
    }

    #[test]
    fn record_appends_and_numbers_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/known_hosts");
        assert_eq!(record(&p, "h", 2222, &key(K1)).unwrap(), 1);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"# no newline")
            .unwrap();
        assert_eq!(record(&p, "h2", 22, &key(K2)).unwrap(), 3);
        assert_eq!(
            check(&p, "h2", 22, &key(K2)).unwrap(),
            Verdict::Known { line: 3 }
        );
        assert_eq!(
            check(&p, "h", 2222, &key(K1)).unwrap(),
            Verdict::Known { line: 1 }
        );
    }
}
