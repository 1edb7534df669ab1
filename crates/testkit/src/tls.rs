//! Certificates for TLS servers: a private CA, a server certificate signed by
//! it, and a client certificate for servers that require one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::Error;

/// Whether a TLS server asks clients for a certificate
/// (`--tls-auth-clients`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// `optional`: a client may connect without a certificate; one it shows
    /// must be signed by the CA.
    #[default]
    Optional,
    /// `yes`: a client without a certificate signed by the CA is refused.
    Required,
}

/// PEM files of a private CA and of the certificates it signed, in one
/// directory: `ca.pem`, `server.pem` + `server.key` (for `127.0.0.1` and
/// `localhost`), `client.pem` + `client.key`.
///
/// [`generate`](Self::generate) makes a new CA each time, so the files of
/// two calls do not trust each other: a client given the CA of one fails to
/// verify a server of the other, as with a wrong `--tls-ca`. Several
/// servers share a CA when given the same files
/// ([`ServerOptions::tls_files`](crate::ServerOptions::tls_files)).
///
/// ```
/// let files = testkit::TlsFiles::generate_temp()?;
/// assert!(files.ca().exists() && files.server_cert().exists());
/// # Ok::<(), testkit::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TlsFiles {
    dir: PathBuf,
    /// With [`generate_temp`](Self::generate_temp): the directory, removed
    /// when the last clone is dropped.
    _owned: Option<Arc<tempfile::TempDir>>,
}

impl TlsFiles {
    /// Generates a CA and the server and client certificates it signs
    /// (ECDSA P-256) into `dir`, which must exist.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] if a certificate cannot be made, [`Error::Io`] if a
    /// file cannot be written.
    pub fn generate(dir: &Path) -> Result<TlsFiles, Error> {
        let files = TlsFiles {
            dir: dir.to_owned(),
            _owned: None,
        };
        let tls = |e: rcgen::Error| Error::Tls(e.to_string());

        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        // A name of its own, so that another call's CA is not even taken
        // for this one's issuer: a wrong CA is an unknown issuer, as in
        // real life, rather than a bad signature.
        ca.distinguished_name
            .push(DnType::CommonName, format!("testkit CA {}", unique()));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().map_err(tls)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(tls)?;
        std::fs::write(files.ca(), ca_cert.pem())?;
        let issuer = Issuer::new(ca, ca_key);

        let leaf =
            |names: Vec<String>, usage: &[ExtendedKeyUsagePurpose], cert: PathBuf, key: PathBuf| {
                let mut params = CertificateParams::new(names).map_err(tls)?;
                params
                    .distinguished_name
                    .push(DnType::CommonName, "testkit");
                params.extended_key_usages = usage.to_vec();
                let pair = KeyPair::generate().map_err(tls)?;
                let signed = params.signed_by(&pair, &issuer).map_err(tls)?;
                std::fs::write(cert, signed.pem())?;
                std::fs::write(key, pair.serialize_pem())?;
                Ok::<(), Error>(())
            };
        // Servers are clients too: a cluster node on another's bus, a
        // replica of its master, each showing its own certificate.
        leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            files.server_cert(),
            files.server_key(),
        )?;
        leaf(
            vec!["testkit-client".into()],
            &[ExtendedKeyUsagePurpose::ClientAuth],
            files.client_cert(),
            files.client_key(),
        )?;
        Ok(files)
    }

    /// [`generate`](Self::generate) into a temporary directory of their
    /// own, removed when the last clone of the files is dropped: for
    /// several servers that share one CA (Redlock masters, cluster nodes).
    ///
    /// # Errors
    ///
    /// As [`generate`](Self::generate); [`Error::Io`] if the directory
    /// cannot be made.
    pub fn generate_temp() -> Result<TlsFiles, Error> {
        let dir = tempfile::Builder::new().prefix("testkit-tls-").tempdir()?;
        let mut files = TlsFiles::generate(dir.path())?;
        files._owned = Some(Arc::new(dir));
        Ok(files)
    }

    /// The CA certificate, which a client trusts to verify the server.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server's certificate (for `127.0.0.1` and `localhost`).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The server's private key.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// A client certificate signed by the CA.
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    /// The client certificate's private key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
}

/// Different at each call, and across processes.
fn unique() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}
