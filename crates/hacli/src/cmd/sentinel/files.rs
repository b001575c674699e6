//! The host's files: the reboot-required file and the gated sentinel file
//! kured watches.

use std::path::Path;

use anyhow::Context as _;

/// When the reboot-required file appeared (its modification time), as
/// Unix seconds; None without one.
pub(super) fn pending_since(path: &Path) -> Option<f64> {
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(
        m.duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64(),
    )
}

/// Create (`on`) or remove the gated file kured watches; whether it
/// exists (`on`) or was removed (not `on`).
pub(super) fn set_sentinel(path: &Path, on: bool) -> anyhow::Result<bool> {
    if on {
        if !path.exists() {
            std::fs::write(path, "gated by hacli sentinel\n")
                .with_context(|| format!("creating the sentinel {}", path.display()))?;
        }
        Ok(true)
    } else {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("removing the sentinel {}", path.display())),
        }
    }
}
