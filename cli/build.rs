//! Embeds the git revision the CLI is built from (`custody version`), or
//! "unknown" outside a git checkout.

include!("../build-support/git_revision.rs");

fn main() {
    println!("cargo:rustc-env=CUSTODY_GIT_REVISION={}", git_revision());
}
