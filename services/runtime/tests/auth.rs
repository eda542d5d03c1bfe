//! RS256 tokens with a real key pair made by openssl.

use std::process::Command;
use std::time::Duration;

use circulatory::auth::{claims_for, mint_hs256, mint_rs256, AuthError, TokenVerifier};

#[test]
fn rs256_tokens_verify_with_the_public_key_and_hs256_still_works_beside_it() {
    let dir = std::env::temp_dir().join(format!("circ-rsa-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("private.pem");
    let public = dir.join("public.pem");
    let generated = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        .status()
        .expect("openssl runs");
    assert!(generated.success());
    let exported = Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap();
    assert!(exported.success());

    let secret = b"an-hs256-secret-of-at-least-32-bytes";
    let verifier =
        TokenVerifier::new(Some(secret), Some(&std::fs::read(&public).unwrap()), None).unwrap();
    let mut claims = claims_for("studio", Duration::from_secs(60));
    claims.events = vec!["video.*".into()];
    let rs = mint_rs256(&std::fs::read(&private).unwrap(), &claims).unwrap();
    assert_eq!(verifier.verify(&rs).unwrap(), claims);
    let hs = mint_hs256(secret, &claims).unwrap();
    assert_eq!(verifier.verify(&hs).unwrap(), claims);

    let hs_only = TokenVerifier::new(Some(secret), None, None).unwrap();
    assert_eq!(hs_only.verify(&rs), Err(AuthError::Algorithm("HS256")));
    std::fs::remove_dir_all(dir).ok();
}
