//! Link the `hacli` executable without PIE, as Go links kubectl and
//! etcdctl. A PIE carries ~30,000 relative relocations that the loader
//! applies at every start, writing ~130 pages of pointers: 0.3 ms of each
//! short-lived gate (measured with hyperfine on `hacli --version`). Set
//! `HACLI_PIE=1` when building to keep a position-independent executable
//! (full ASLR for the binary itself).

fn main() {
    println!("cargo:rerun-if-env-changed=HACLI_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux && std::env::var_os("HACLI_PIE").is_none() {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
