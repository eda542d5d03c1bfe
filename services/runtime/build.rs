//! Rebuilds the crate when a migration is added, so the embedded migrations stay current.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
