//! `[listeners.client.tls]`: the certificates the client listener terminates TLS
//! with (PEM files), read by `crate::tls` at start, by `check-config` and again on
//! every reload (SIGHUP).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Most certificates in one listener's SNI list.
pub const MAX_TLS_CERTIFICATES: usize = 64;

/// TLS on the client listener: one certificate (`cert` + `key`), or several in
/// `[[listeners.client.tls.certificates]]` chosen by SNI (the first is the default
/// for clients that send no name, or a name no certificate covers).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first) of the single certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Several certificates, chosen by the names in each one's subjectAltName.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificatePair>,
}

/// One certificate chain and its key.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertificatePair {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl TlsConfig {
    /// Every configured pair, the single `cert`/`key` first.
    pub fn pairs(&self) -> Vec<CertificatePair> {
        let mut v = Vec::with_capacity(self.certificates.len() + 1);
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            v.push(CertificatePair {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        v.extend(self.certificates.iter().cloned());
        v
    }

    /// Shape rules (the files themselves are checked by `crate::tls`): `cert` and
    /// `key` go together, at least one certificate, at most
    /// [`MAX_TLS_CERTIFICATES`].
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match (&self.cert, &self.key) {
            (Some(_), None) => {
                return Err(("listeners.client.tls.key", "`cert` needs its `key`".into()));
            }
            (None, Some(_)) => {
                return Err(("listeners.client.tls.cert", "`key` needs its `cert`".into()));
            }
            _ => {}
        }
        let n = self.pairs().len();
        if n == 0 {
            return Err((
                "listeners.client.tls",
                "give `cert` and `key`, or [[listeners.client.tls.certificates]]".into(),
            ));
        }
        if n > MAX_TLS_CERTIFICATES {
            return Err((
                "listeners.client.tls.certificates",
                format!("at most {MAX_TLS_CERTIFICATES} certificates"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let parse = |s: &str| toml::from_str::<TlsConfig>(s).unwrap();
        let one = parse("cert = \"a.pem\"\nkey = \"a.key\"\n");
        assert_eq!(one.pairs().len(), 1);
        assert!(one.validate().is_ok());
        let many = parse(
            "[[certificates]]\ncert = \"a.pem\"\nkey = \"a.key\"\n\
             [[certificates]]\ncert = \"b.pem\"\nkey = \"b.key\"\n",
        );
        assert_eq!(many.pairs().len(), 2);
        assert!(many.validate().is_ok());
        assert_eq!(
            parse("cert = \"a.pem\"\n").validate().unwrap_err().0,
            "listeners.client.tls.key"
        );
        assert_eq!(parse("").validate().unwrap_err().0, "listeners.client.tls");
        assert!(toml::from_str::<TlsConfig>("crt = \"a\"\n").is_err());
    }
}
