//! Test certificates made by the `openssl` command: a P-256 CA, a server certificate for
//! 127.0.0.1/localhost and a client certificate, written into a directory.

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
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=caracal test CA"];
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
