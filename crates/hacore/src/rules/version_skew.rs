//! kubeadm's version rules for an upgrade to a given version, checked
//! before the first master is touched: one minor per `kubeadm upgrade
//! apply` (no skipped minor), no downgrade, and every kubelet within the
//! supported skew of the new apiserver (at most three minors older, never
//! newer). The refusal names the supported path ("v1.31 → v1.32 →
//! v1.33"). Pure: the versions come in as data.

/// A `vMAJOR.MINOR.PATCH` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl Version {
    /// Parse `v1.33.2` (the `v` optional; a suffix after `-` or `+` is
    /// ignored, as in `v1.33.2+k3s1`).
    pub fn parse(s: &str) -> Result<Version, String> {
        let core = s
            .trim()
            .trim_start_matches('v')
            .split(['-', '+'])
            .next()
            .unwrap_or_default();
        let mut it = core.split('.').map(str::parse::<u32>);
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch)), None) => Ok(Version {
                major,
                minor,
                patch,
            }),
            _ => Err(format!("`{s}` is not a version vMAJOR.MINOR.PATCH")),
        }
    }

    fn minor_name(self) -> String {
        format!("v{}.{}", self.major, self.minor)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// How many minors a kubelet may lag the apiserver (Kubernetes 1.28+).
pub const KUBELET_SKEW: u32 = 3;

/// The minors from `from` to `to`, one per `kubeadm upgrade apply`:
/// "v1.31 → v1.32 → v1.33".
pub fn path(from: Version, to: Version) -> String {
    let mut steps = vec![from.minor_name()];
    let mut m = from.minor;
    while m < to.minor {
        m += 1;
        steps.push(format!("v{}.{m}", from.major));
    }
    steps.join(" → ")
}

/// Whether upgrading a cluster at `cluster` to `to` is what kubeadm
/// supports, with `kubelets` (node, version) as they are: Ok with what
/// the step is, or why not, naming the supported path.
pub fn check_upgrade(
    cluster: &str,
    to: &str,
    kubelets: &[(String, String)],
) -> Result<String, String> {
    let c = Version::parse(cluster).map_err(|e| format!("the cluster's version: {e}"))?;
    let t = Version::parse(to).map_err(|e| format!("--to: {e}"))?;
    if t.major != c.major {
        return Err(format!(
            "{c} → {t} changes the major version: kubeadm does not upgrade across majors"
        ));
    }
    if t < c {
        return Err(format!(
            "{t} is older than the cluster's {c}: kubeadm does not downgrade (restore an etcd snapshot taken before the upgrade instead)"
        ));
    }
    if t.minor > c.minor + 1 {
        return Err(format!(
            "{c} → {t} skips a minor version: kubeadm upgrades one minor at a time, {} (`kubeadm upgrade apply` once per minor, the latest patch of each)",
            path(c, t)
        ));
    }
    let mut bad = Vec::new();
    for (node, v) in kubelets {
        let k = Version::parse(v).map_err(|e| format!("{node}'s kubelet: {e}"))?;
        if k.major != t.major || k.minor > t.minor {
            bad.push(format!(
                "{node}'s kubelet {k} is newer than the apiserver would be ({t})"
            ));
        } else if k.minor + KUBELET_SKEW < t.minor {
            bad.push(format!(
                "{node}'s kubelet {k} would be {} minors behind the apiserver {t} (at most {KUBELET_SKEW} are supported): upgrade that kubelet along {} first",
                t.minor - k.minor,
                path(k, Version { minor: t.minor - KUBELET_SKEW, ..t })
            ));
        }
    }
    if !bad.is_empty() {
        return Err(bad.join("; "));
    }
    Ok(if t == c {
        format!("the cluster is already at {t}")
    } else {
        format!("{c} → {t}: one step kubeadm supports")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn one_minor_at_a_time_no_downgrade_and_the_refusal_names_the_path() {
        assert!(check_upgrade("v1.32.1", "v1.32.2", &[]).is_ok());
        assert!(check_upgrade("v1.32.1", "v1.33.0", &[]).is_ok());
        assert_eq!(
            check_upgrade("v1.31.4", "v1.33.0", &[]).unwrap_err(),
            "v1.31.4 → v1.33.0 skips a minor version: kubeadm upgrades one minor at a time, v1.31 → v1.32 → v1.33 (`kubeadm upgrade apply` once per minor, the latest patch of each)"
        );
        assert!(
            check_upgrade("v1.32.1", "v1.32.0", &[])
                .unwrap_err()
                .contains("does not downgrade")
        );
        assert!(
            check_upgrade("v1.32.1", "2.0.0", &[])
                .unwrap_err()
                .contains("major")
        );
        assert!(
            check_upgrade("v1.32.1", "latest", &[])
                .unwrap_err()
                .starts_with("--to: `latest`")
        );
    }

    #[test]
    fn kubelets_must_stay_within_three_minors_and_never_ahead() {
        assert!(check_upgrade("v1.32.0", "v1.33.0", &k(&[("w1", "v1.30.5")])).is_ok());
        let e = check_upgrade("v1.32.0", "v1.33.0", &k(&[("w1", "v1.29.9")])).unwrap_err();
        assert_eq!(
            e,
            "w1's kubelet v1.29.9 would be 4 minors behind the apiserver v1.33.0 (at most 3 are supported): upgrade that kubelet along v1.29 → v1.30 first"
        );
        let e = check_upgrade("v1.32.0", "v1.32.1", &k(&[("m1", "v1.33.0")])).unwrap_err();
        assert!(e.contains("newer than the apiserver"), "{e}");
    }
}
