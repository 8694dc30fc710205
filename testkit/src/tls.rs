//! Throwaway certificate authorities and certificates for TLS tests, made
//! with the `openssl` command (OpenSSL 3): PEM files that Kafka brokers
//! (`ssl.keystore.type=PEM`) and librdkafka read directly. Certificates are
//! shaped as production ones: the CA is a CA, a leaf is `CA:FALSE` with
//! server and client authentication usages.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::TestkitError;

/// A certificate and its unencrypted PKCS#8 private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
    /// Certificate and key in one file: a broker's PEM keystore.
    pub keystore: PathBuf,
}

/// An empty request configuration: the system's `openssl.cnf` would add
/// its own `v3_ca` extensions to every certificate, leaves included.
const MINIMAL_CONFIG: &str = "[req]\ndistinguished_name = dn\n[dn]\n";

/// A self-signed certificate authority in a folder.
#[derive(Debug, Clone)]
pub struct TestCa {
    dir: PathBuf,
    name: String,
    config: PathBuf,
    /// The CA's own certificate: the trust anchor to give clients.
    pub cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    /// Makes a CA named `name` under `dir`.
    pub fn new(dir: &Path, name: &str) -> Result<Self, TestkitError> {
        std::fs::create_dir_all(dir)
            .map_err(TestkitError::io(format!("creating {}", dir.display())))?;
        let cert = dir.join(format!("{name}-ca.pem"));
        let key = dir.join(format!("{name}-ca.key"));
        let config = dir.join("openssl-minimal.cnf");
        std::fs::write(&config, MINIMAL_CONFIG)
            .map_err(TestkitError::io("writing the openssl config"))?;
        openssl(&[
            "req",
            "-config",
            path_str(&config)?,
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            path_str(&key)?,
            "-out",
            path_str(&cert)?,
        ])?;
        Ok(Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
            config,
            cert,
            key,
        })
    }

    /// Issues a certificate for common name `cn` whose subject alternative
    /// names are `sans` (e.g. `IP:127.0.0.1`, `DNS:broker.example`).
    pub fn issue(&self, cn: &str, sans: &[&str]) -> Result<CertFiles, TestkitError> {
        self.issue_valid_for(cn, sans, 2)
    }

    /// Like [`TestCa::issue`], but the certificate expired yesterday: it
    /// was valid from now until a day ago, which no verifier accepts.
    pub fn issue_expired(&self, cn: &str, sans: &[&str]) -> Result<CertFiles, TestkitError> {
        self.issue_valid_for(cn, sans, -1)
    }

    /// A request with the extensions, then the CA's signature over it with
    /// `days` of validity (`openssl x509` takes a negative count; `openssl
    /// req -x509` does not).
    fn issue_valid_for(
        &self,
        cn: &str,
        sans: &[&str],
        days: i32,
    ) -> Result<CertFiles, TestkitError> {
        let base = format!(
            "{}-{}",
            self.name,
            cn.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        let cert = self.dir.join(format!("{base}.pem"));
        let key = self.dir.join(format!("{base}.key"));
        let request = self.dir.join(format!("{base}.csr"));
        let mut args = vec![
            "req".to_owned(),
            "-config".into(),
            path_str(&self.config)?.into(),
            "-new".into(),
            "-newkey".into(),
            "rsa:2048".into(),
            "-nodes".into(),
            "-subj".into(),
            format!("/CN={cn}"),
            "-addext".into(),
            "basicConstraints=critical,CA:FALSE".into(),
            "-addext".into(),
            "extendedKeyUsage=serverAuth,clientAuth".into(),
            "-keyout".into(),
            path_str(&key)?.into(),
            "-out".into(),
            path_str(&request)?.into(),
        ];
        if !sans.is_empty() {
            args.push("-addext".into());
            args.push(format!("subjectAltName={}", sans.join(",")));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(&args)?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            path_str(&request)?,
            "-CA",
            path_str(&self.cert)?,
            "-CAkey",
            path_str(&self.key)?,
            "-copy_extensions",
            "copyall",
            "-days",
            &days.to_string(),
            "-out",
            path_str(&cert)?,
        ])?;
        let keystore = self.dir.join(format!("{base}.keystore.pem"));
        let mut pem = std::fs::read(&cert).map_err(TestkitError::io("reading a certificate"))?;
        pem.extend(std::fs::read(&key).map_err(TestkitError::io("reading a key"))?);
        std::fs::write(&keystore, pem).map_err(TestkitError::io("writing a keystore"))?;
        Ok(CertFiles {
            cert,
            key,
            keystore,
        })
    }
}

fn path_str(path: &Path) -> Result<&str, TestkitError> {
    path.to_str().ok_or_else(|| TestkitError::Child {
        what: "openssl".into(),
        detail: format!("path {} is not UTF-8", path.display()),
    })
}

fn openssl(args: &[&str]) -> Result<(), TestkitError> {
    let output = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(TestkitError::io(
            "running openssl (apt-get install openssl)",
        ))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(TestkitError::Child {
            what: format!("openssl {}", args.first().copied().unwrap_or_default()),
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `openssl verify` says of `cert` against the CA.
    fn verify(ca: &TestCa, cert: &Path) -> String {
        let output = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&ca.cert)
            .arg(cert)
            .output()
            .expect("openssl verify");
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    #[test]
    fn issued_certificates_verify_and_expired_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "unit").unwrap();
        let good = ca.issue("broker", &["IP:127.0.0.1"]).unwrap();
        assert!(
            verify(&ca, &good.cert).contains(": OK"),
            "{}",
            verify(&ca, &good.cert)
        );
        let expired = ca.issue_expired("old-broker", &["IP:127.0.0.1"]).unwrap();
        let verdict = verify(&ca, &expired.cert);
        assert!(verdict.contains("certificate has expired"), "{verdict}");
    }
}
