//! `TRACKTABLE_SKIP_SERVICES=1` compiles the tests that need PostgreSQL or the S3/SQS
//! emulator as ignored, so a run without them says so in its counts.

fn main() {
    println!("cargo::rerun-if-env-changed=TRACKTABLE_SKIP_SERVICES");
    println!("cargo::rustc-check-cfg=cfg(skip_services)");
    let skip = std::env::var("TRACKTABLE_SKIP_SERVICES")
        .is_ok_and(|value| !value.is_empty() && value != "0");
    if skip {
        println!("cargo::rustc-cfg=skip_services");
    }
}
