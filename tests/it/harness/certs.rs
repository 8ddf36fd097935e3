//! Test certificates made by the `openssl` command: a P-256 CA, a server certificate for
//! 127.0.0.1/localhost and a client certificate, written into a directory; a rustls client
//! configuration that trusts the CA and presents the client certificate.

use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate whose CN is
/// `user`, all P-256, written into `dir`.
pub fn make_certificates(dir: &Path, user: &str) {
    make_certificates_of(dir, user, "caracal test CA");
}

/// [`make_certificates`] under a CA named `ca_name` (another name than the usual CA's makes
/// its certificates those of an unknown issuer, not of a forged signature).
pub fn make_certificates_of(dir: &Path, user: &str, ca_name: &str) {
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_subject = format!("/CN={ca_name}");
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", &ca_subject];
    ca.extend(key);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(dir, &ca);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, cn) in [
        ("server", "localhost".to_owned()),
        ("client", user.to_owned()),
    ] {
        let subject = format!("/CN={cn}");
        let (keyfile, csr) = (format!("{name}.key"), format!("{name}.csr"));
        let mut req = vec!["req", "-new", "-subj", &subject];
        req.extend(key);
        req.extend(["-keyout", &keyfile, "-out", &csr]);
        openssl(dir, &req);
        let (crt, ext) = (format!("{name}.crt"), format!("{name}.ext"));
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &crt,
            ],
        );
    }
}

/// A rustls client configuration trusting `dir`'s CA and presenting its client certificate.
pub fn client_tls(dir: &Path) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(dir.join("client.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("client.key")).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap()
}
