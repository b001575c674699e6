//! Proxmox task ids (UPIDs) and how a finished task ended.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A task id: `UPID:node:PID:PSTART:STARTTIME:type:id:user:` (hex numbers;
/// 9 fields when split on `:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upid {
    /// Node the task runs on.
    pub node: String,
    /// Worker process id.
    pub pid: u32,
    /// Worker process start (clock ticks).
    pub pstart: u64,
    /// Start time (Unix seconds).
    pub starttime: i64,
    /// Task type (`qmclone`, `qmstart`, `qmdestroy`...).
    pub kind: String,
    /// Task object id (usually the VM id).
    pub id: String,
    /// Who started it (`user@realm!token`).
    pub user: String,
    raw: String,
}

impl Upid {
    /// The UPID as Proxmox wrote it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for Upid {
    type Err = Error;

    fn from_str(s: &str) -> Result<Upid, Error> {
        let bad = || Error::BadUpid(s.to_string());
        let f: Vec<&str> = s.split(':').collect();
        if f.len() != 9 || f[0] != "UPID" || !f[8].is_empty() || f[1].is_empty() {
            return Err(bad());
        }
        Ok(Upid {
            node: f[1].to_string(),
            pid: u32::from_str_radix(f[2], 16).map_err(|_| bad())?,
            pstart: u64::from_str_radix(f[3], 16).map_err(|_| bad())?,
            starttime: i64::from_str_radix(f[4], 16).map_err(|_| bad())?,
            kind: f[5].to_string(),
            id: f[6].to_string(),
            user: f[7].to_string(),
            raw: s.to_string(),
        })
    }
}

/// How a task that ended well ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// `exitstatus == "OK"`.
    Ok,
    /// `WARNINGS: n`: success, with n warnings in the task log.
    Warnings(u32),
}

/// Read a stopped task's exit status: `OK`, `WARNINGS: n`, or a failure with
/// Proxmox's text.
pub fn outcome(upid: &Upid, exitstatus: &str) -> Result<TaskOutcome, Error> {
    if exitstatus == "OK" {
        return Ok(TaskOutcome::Ok);
    }
    if let Some(n) = exitstatus.strip_prefix("WARNINGS: ")
        && let Ok(n) = n.trim().parse()
    {
        return Ok(TaskOutcome::Warnings(n));
    }
    Err(Error::TaskFailed {
        upid: upid.to_string(),
        kind: upid.kind.clone(),
        node: upid.node.clone(),
        exitstatus: exitstatus.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_clone_upid() {
        let u: Upid = "UPID:pve1:0000A1B2:0012D687:67A0C0DE:qmclone:9000:root@pam!hacli:"
            .parse()
            .unwrap();
        assert_eq!(u.node, "pve1");
        assert_eq!(u.pid, 0xA1B2);
        assert_eq!(u.pstart, 0x12D687);
        assert_eq!(u.starttime, 0x67A0C0DE);
        assert_eq!(u.kind, "qmclone");
        assert_eq!(u.id, "9000");
        assert_eq!(u.user, "root@pam!hacli");
        assert_eq!(u.to_string(), u.as_str());
    }

    #[test]
    fn refuses_malformed_upids() {
        for s in [
            "",
            "UPID:pve1:1:2:3:qmstart:100:root@pam",
            "UPID:pve1:zz:2:3:qmstart:100:root@pam:",
            "TASK:pve1:1:2:3:qmstart:100:root@pam:",
            "UPID:pve1:1:2:3:qmstart:100:root@pam:x",
        ] {
            assert!(s.parse::<Upid>().is_err(), "{s}");
        }
    }

    #[test]
    fn exit_statuses() {
        let u: Upid = "UPID:n:1:2:3:qmstart:100:u@pam:".parse().unwrap();
        assert_eq!(outcome(&u, "OK").unwrap(), TaskOutcome::Ok);
        assert_eq!(
            outcome(&u, "WARNINGS: 2").unwrap(),
            TaskOutcome::Warnings(2)
        );
        let e = outcome(&u, "start failed: QEMU exited with code 1").unwrap_err();
        assert!(e.to_string().contains("QEMU exited with code 1"), "{e}");
    }
}
