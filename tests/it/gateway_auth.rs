//! The gateway's `jwt` and `mtls` modes with keys and certificates made by openssl: forged,
//! expired, `alg: none`, wrong-audience tokens and foreign client certificates are refused and
//! never reach the upstream; probes answer without a client certificate.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::harness::gateway::{gateway_env, tree, Gateway, Mock};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("openssl is required (scripts/test.sh installs it): {e}"));
    assert!(status.success(), "openssl {args:?} failed");
}

fn chat() -> String {
    json!({"model": "mock-gpt", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[test]
fn only_valid_jwts_for_the_right_audience_reach_the_upstream() {
    let mock = Mock::start(&[]);
    let keys = crate::harness::TempDir::new();
    openssl(keys.path(), &["genrsa", "-out", "jwt_private.pem", "2048"]);
    openssl(
        keys.path(),
        &[
            "rsa",
            "-in",
            "jwt_private.pem",
            "-pubout",
            "-out",
            "jwt_public.pem",
        ],
    );
    openssl(keys.path(), &["genrsa", "-out", "forger.pem", "2048"]);
    let public = keys.path().join("jwt_public.pem");
    let env = gateway_env(
        &mock,
        &[
            ("CARACAL_GATEWAY__AUTHMODE", "jwt"),
            (
                "CARACAL_GATEWAY__JWT__PUBLICKEYFILE",
                public.to_str().unwrap(),
            ),
            ("CARACAL_GATEWAY__JWT__ISSUER", "caracal"),
            ("CARACAL_GATEWAY__JWT__AUDIENCE", "caracal-gateway"),
        ],
    );
    let t = tree(&env, "10.00", "5.00");
    let private = keys.path().join("jwt_private.pem");
    let forger = keys.path().join("forger.pem");
    let token = |key: &Path, audience: &str| {
        env.cli(&[
            "agent",
            "token",
            "--agent-id",
            &t.child,
            "--private-key",
            key.to_str().unwrap(),
            "--issuer",
            "caracal",
            "--audience",
            audience,
        ])
        .ok()
        .trim()
        .to_owned()
    };
    let valid = token(&private, "caracal-gateway");
    let forged = token(&forger, "caracal-gateway");
    let wrong_audience = token(&private, "someone-else");
    let pem = std::fs::read(&private).unwrap();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({"sub": t.child, "iss": "caracal", "aud": "caracal-gateway", "exp": 1_600_000_000, "iat": 1_599_999_000}),
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(json!({"sub": t.child, "iss": "caracal", "aud": "caracal-gateway", "exp": 4_000_000_000u64}).to_string().as_bytes())
    );
    let gw = Gateway::start(env);

    for (name, bad) in [
        ("forged", &forged),
        ("wrong audience", &wrong_audience),
        ("expired", &expired),
        ("alg none", &none),
    ] {
        let response = gw.post("/openai/v1/chat/completions", bad, &chat());
        assert_eq!(response.status, 401, "{name}: {}", response.body);
        assert_eq!(
            response.json()["error"]["code"],
            "unauthenticated",
            "{name}"
        );
    }
    assert_eq!(mock.requests(), 0, "a refused token reached the upstream");
    let ok = gw.post("/openai/v1/chat/completions", &valid, &chat());
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(mock.requests(), 1);
}

/// curl's HTTP status for a request, or None when the connection itself was refused.
fn curl(args: &[&str]) -> Option<u16> {
    let output = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("curl is required (scripts/test.sh installs it): {e}"));
    let code: u16 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if !output.status.success() {
        eprintln!(
            "curl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    (output.status.success() && code != 0).then_some(code)
}

#[test]
fn mtls_admits_probes_without_a_certificate_and_requires_one_from_the_right_ca_for_traffic() {
    let mock = Mock::start(&[]);
    let pki = crate::harness::TempDir::new();
    let dir = pki.path();
    let env_probe = gateway_env(&mock, &[]);
    let t = tree(&env_probe, "10.00", "5.00");
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={ca}"),
            ],
        );
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let sign = |name: &str, ca: &str, subject: &str, ext: Option<&str>| {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                subject,
            ],
        );
        let mut args = vec!["x509", "-req", "-in", &format!("{name}.csr")]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        args.extend(
            [
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
            ]
            .map(String::from),
        );
        if let Some(ext) = ext {
            args.extend(["-extfile".to_owned(), ext.to_owned()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(dir, &refs);
    };
    sign("server", "ca", "/CN=caracal-gateway", Some("server.ext"));
    sign(
        "agent",
        "ca",
        &format!("/CN={}", t.child),
        Some("client.ext"),
    );
    sign(
        "intruder",
        "other-ca",
        &format!("/CN={}", t.child),
        Some("client.ext"),
    );
    let path = |f: &str| dir.join(f).display().to_string();
    let env = env_probe
        .with("CARACAL_GATEWAY__AUTHMODE", "mtls")
        .with("CARACAL_GATEWAY__TLS__CERTFILE", &path("server.crt"))
        .with("CARACAL_GATEWAY__TLS__KEYFILE", &path("server.key"))
        .with("CARACAL_GATEWAY__TLS__CLIENTCAFILE", &path("ca.crt"));
    let gw = Gateway::start(env);
    let base = format!("https://127.0.0.1:{}", gw.port);
    let cacert = path("ca.crt");
    let body = chat();
    let url = format!("{base}/openai/v1/chat/completions");
    let post = |extra: &[&str]| {
        let mut args = vec![
            "--cacert",
            cacert.as_str(),
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            body.as_str(),
        ];
        args.extend_from_slice(extra);
        args.push(url.as_str());
        curl(&args)
    };

    assert_eq!(
        curl(&["--cacert", &cacert, &format!("{base}/health")]),
        Some(200)
    );
    assert_eq!(
        post(&[]),
        Some(401),
        "a proxied route without a client certificate must be refused"
    );
    let intruder = post(&[
        "--cert",
        &path("intruder.crt"),
        "--key",
        &path("intruder.key"),
    ]);
    assert_eq!(
        intruder,
        Some(401),
        "a certificate from another CA must be refused with 401"
    );
    assert_eq!(mock.requests(), 0);
    assert_eq!(
        post(&["--cert", &path("agent.crt"), "--key", &path("agent.key")]),
        Some(200)
    );
    assert_eq!(mock.requests(), 1);
}
