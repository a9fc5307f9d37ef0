//! Embeds the git revision the filter is built from (its configure log line
//! and the `custody_build_info` metric), or "unknown" outside a git checkout.

include!("../build-support/git_revision.rs");

fn main() {
    println!("cargo:rustc-env=CUSTODY_GIT_REVISION={}", git_revision());
}
