//! How the `hacli` executable is linked on Linux. A gate is a short-lived
//! process that a pipeline or the sentinel starts again and again, so its
//! start-up counts; two linker choices take about 0.5 ms off each run here
//! (`hyperfine -N 'hacli --version'`: 1.4 ms with rustc's defaults, 1.0 ms
//! with both; `/bin/true` takes 0.6 ms on the same machine):
//!
//! - No PIE, as Go links kubectl and etcdctl. A PIE carries ~30,000 relative
//!   relocations that the loader applies at every start, writing ~130 pages
//!   of pointers.
//! - libgcc's unwinder linked in statically, as `gcc -static-libgcc` does,
//!   instead of loading libgcc_s.so.1, whose constructor probes the CPU with
//!   a dozen `cpuid` instructions (each one traps to the hypervisor in a VM).
//!   Done by putting a `libgcc_s.so` linker script that names the static
//!   archives ahead of the system one on the library path; only when the
//!   compiler has `libgcc_eh.a`.
//!
//! `HACLI_DEFAULT_LINK=1` at build time keeps rustc's defaults (a PIE, with
//! full ASLR for the executable itself, and the shared libgcc_s).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HACLI_DEFAULT_LINK");
    println!("cargo:rerun-if-changed=build.rs");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let gnu = std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !linux || std::env::var_os("HACLI_DEFAULT_LINK").is_some() {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-no-pie");
    if gnu && has_static_libgcc_eh() {
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let dir = out.join("static-libgcc");
        std::fs::create_dir_all(&dir).expect("create OUT_DIR/static-libgcc");
        std::fs::write(dir.join("libgcc_s.so"), "INPUT ( -lgcc_eh -lgcc )\n")
            .expect("write the libgcc_s.so linker script");
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
}

/// Whether the C compiler that links for us ships `libgcc_eh.a`
/// (`cc -print-file-name` echoes the bare name when it does not).
fn has_static_libgcc_eh() -> bool {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .is_some_and(|p| p.contains('/') && std::path::Path::new(&p).exists())
}
