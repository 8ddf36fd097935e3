//! The agent named by a verified client certificate (`mtls` mode): a SAN URI whose last
//! segment is the agent id (`spiffe://org/agent/<id>`, `urn:caracal:agent:<id>`), else the
//! subject CN. Verification is rustls's job; this only reads an already-trusted certificate.

use rustls_pki_types::CertificateDer;
use x509_cert::der::asn1::{PrintableStringRef, Utf8StringRef};
use x509_cert::der::{oid::db::rfc4519::CN, Decode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

/// OID of the subjectAltName extension (RFC 5280 §4.2.1.6).
const SUBJECT_ALT_NAME: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.29.17");

/// The agent id a client certificate names, as text (parsed as a UUID by the caller).
pub fn agent_of(certs: &[CertificateDer<'static>]) -> Option<String> {
    let cert = Certificate::from_der(certs.first()?.as_ref()).ok()?;
    let tbs = &cert.tbs_certificate;
    for ext in tbs.extensions.iter().flatten() {
        if ext.extn_id != SUBJECT_ALT_NAME {
            continue;
        }
        let Ok(san) = SubjectAltName::from_der(ext.extn_value.as_bytes()) else {
            continue;
        };
        for name in san.0 {
            if let GeneralName::UniformResourceIdentifier(uri) = name {
                let text = uri.as_str();
                let last = text.rsplit([':', '/']).next().unwrap_or(text);
                if uuid::Uuid::parse_str(last).is_ok() {
                    return Some(last.to_owned());
                }
            }
        }
    }
    for rdn in tbs.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid != CN {
                continue;
            }
            if let Ok(s) = Utf8StringRef::try_from(&atv.value) {
                return Some(s.as_str().to_owned());
            }
            if let Ok(s) = PrintableStringRef::try_from(&atv.value) {
                return Some(s.as_str().to_owned());
            }
        }
    }
    None
}
