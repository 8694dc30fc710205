//! Gives the shared library a versioned soname, so programs linked against
//! `libshmkafka.so` record `libshmkafka.so.0` and keep working across
//! ABI-compatible upgrades. Bump the number on any ABI break.

const SONAME_MAJOR: u32 = 0;

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libshmkafka.so.{SONAME_MAJOR}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
