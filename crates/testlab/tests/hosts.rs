//! Lab hosts behave like separate machines: own address, files, processes,
//! power; and nothing of a lab survives it, even a SIGKILL.

use std::time::{Duration, Instant};

use testlab::host::{HostLab, MARKER, marked_processes};

fn out(o: &std::process::Output) -> String {
    format!(
        "status {} stdout {:?} stderr {:?}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn smoke() {
    let Some(lab) = HostLab::start_or_skip("smoke") else {
        return;
    };
    let h1 = lab.add_host("h1").unwrap();
    let o = h1
        .exec(&[
            "sh",
            "-c",
            "hostname; ip -4 -o addr; ls /proc | head -5; mount | head -3",
        ])
        .unwrap();
    println!("{}", out(&o));
    println!(
        "{}",
        std::fs::read_to_string(h1.dir().join("boot.log")).unwrap()
    );
}
