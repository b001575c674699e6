//! Secrets searched for by value: the values a test handed to hacli (a
//! Proxmox token, a pfrest key, a Prometheus password, a kubeconfig's
//! credentials) or that the lab issued while hacli ran (join tokens and
//! certificate keys, as the kubeadm stand-in recorded them), looked for in
//! every output, journal and file hacli wrote. A flag name (`--token `)
//! proves nothing: the value could be in a JSON field.

#![allow(dead_code)] // each test file uses its own part of this module

use std::path::Path;

/// Known secret values, each with where it came from.
#[derive(Default)]
pub struct Secrets(Vec<(String, String)>);

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Add `value` (at least 8 characters: shorter ones would match by chance).
    pub fn add(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        assert!(
            value.len() >= 8,
            "secret {name} is too short to search for: {} characters",
            value.len()
        );
        if !self.0.iter().any(|(_, v)| *v == value) {
            self.0.push((name, value));
        }
    }

    /// Every line of a PEM body (and so the whole key).
    pub fn add_pem(&mut self, name: &str, pem: &str) {
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        {
            self.add(name, line);
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Panic, naming the secret and the place, if any value is in `text`.
    pub fn assert_absent(&self, place: &str, text: &str) {
        for (name, value) in &self.0 {
            if let Some(at) = text.find(value.as_str()) {
                let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let to = text[at..].find('\n').map_or(text.len(), |i| at + i);
                panic!(
                    "the {name} appears in {place}, in the line: {}",
                    // The value itself is not repeated in the failure.
                    text[from..to].replace(value.as_str(), "<the secret>")
                );
            }
        }
    }

    /// [`Secrets::assert_absent`] on every regular file directly in `dir`
    /// whose name `pick` accepts (read as bytes, so binary files too).
    pub fn assert_absent_in_files(&self, dir: &Path, pick: impl Fn(&str) -> bool) -> usize {
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if !e.file_type().unwrap().is_file() || !pick(&name) {
                continue;
            }
            let bytes = std::fs::read(e.path()).unwrap();
            self.assert_absent(
                &e.path().display().to_string(),
                &String::from_utf8_lossy(&bytes),
            );
            n += 1;
        }
        n
    }
}

/// What the kubeadm stand-in recorded issuing on a host
/// (`/etc/testlab/issued-secrets`: `token ID.SECRET`, `certificate-key
/// HEX`), from that file's text.
pub fn add_issued(secrets: &mut Secrets, host: &str, record: &str) {
    for line in record.lines() {
        match line.split_once(' ') {
            Some(("token", t)) => {
                secrets.add(format!("join token issued on {host}"), t);
                // The secret half alone is the secret.
                if let Some((_, s)) = t.split_once('.') {
                    secrets.add(format!("join token secret issued on {host}"), s);
                }
            }
            Some(("certificate-key", k)) => {
                secrets.add(format!("certificate key issued on {host}"), k)
            }
            _ => {}
        }
    }
}
