//! The listener's TLS: the certificate chain and key from `tls_cert` / `tls_key` (PEM), served by
//! rustls (aws-lc-rs), HTTP/1.1 only. [`Tls::reload`] reads both files again (the binary calls it
//! on SIGHUP): new connections get the new certificate, and files that cannot be used leave the
//! current one in place. Errors name the file and the reason, never the key's bytes.

use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject as _};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use crate::config::TlsFiles;

/// A certificate or key file that cannot be served, named with the config field it came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// The listener's TLS set-up: what every connection's handshake uses.
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    resolver: Arc<Resolver>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads both files; an error names the one that cannot be used.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        // Named explicitly rather than the process default: another crate in the same build may
        // enable a second provider, and rustls then refuses to pick one.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let resolver = Arc::new(Resolver { current: RwLock::new(Arc::new(certified_key(files, &provider)?)) });
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("TLS cannot start: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        // The server speaks HTTP/1 only; a client that offers ALPN must accept that.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { files: files.clone(), provider, resolver, acceptor: TlsAcceptor::from(Arc::new(config)) })
    }

    /// Reads the files again and serves what they hold from the next handshake on. On an error
    /// the certificate served until now stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = certified_key(&self.files, &self.provider)?;
        *self.resolver.current.write() = Arc::new(fresh);
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The leaf certificate served to new connections (DER).
    pub fn current_certificate(&self) -> CertificateDer<'static> {
        self.resolver.current.read().cert[0].clone()
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }
}

/// Hands every handshake the certificate loaded last.
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read()))
    }
}

/// The chain from `tls_cert` and the key from `tls_key`, checked to belong together.
fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_text = read("tls_cert", &files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("tls_cert {}: not a PEM certificate chain ({e})", files.cert.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!("tls_cert {}: no CERTIFICATE block in the file", files.cert.display())));
    }
    let key_text = read("tls_key", &files.key)?;
    // The parser's own message may quote the file: say only what is wrong.
    let key = PrivateKeyDer::from_pem_slice(&key_text).map_err(|e| {
        let reason = match e {
            pem::Error::NoItemsFound => "no PRIVATE KEY block (PKCS#8, RSA or EC) in the file",
            _ => "not a PEM private key",
        };
        TlsError(format!("tls_key {}: {reason}", files.key.display()))
    })?;
    let signing_key = provider.key_provider.load_private_key(key).map_err(|_| {
        TlsError(format!(
            "tls_key {}: not a private key this server can use (RSA, ECDSA or Ed25519)",
            files.key.display()
        ))
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(TlsError(format!(
            "tls_key {} does not belong to the first certificate of tls_cert {}",
            files.key.display(),
            files.cert.display()
        ))),
        Err(e) => {
            Err(TlsError(format!("tls_cert {}: the first certificate cannot be read ({e})", files.cert.display())))
        }
    }
}

/// The whole file, wiped from memory once parsed (it may be the private key).
fn read(field: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| TlsError(format!("{field} {}: cannot read: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A self-signed certificate for `localhost` and its key, as PEM.
    fn pair() -> (String, String) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        (cert.pem(), signing_key.serialize_pem())
    }

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Self { dir: tempfile::tempdir().expect("temp dir") }
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        }

        fn files(&self, cert: &str, key: &str) -> TlsFiles {
            TlsFiles { cert: self.write("cert.pem", cert), key: self.write("key.pem", key) }
        }
    }

    fn leaf_der(pem_text: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem_text.as_bytes()).expect("pem")
    }

    fn error(files: &TlsFiles) -> String {
        Tls::load(files).expect_err("refused").to_string()
    }

    #[test]
    fn files_that_cannot_be_served_are_named_with_the_reason() {
        let dir = Files::new();
        let (cert, key) = pair();
        let (_, other_key) = pair();

        let missing = TlsFiles { cert: dir.dir.path().join("nope.pem"), key: dir.write("key.pem", &key) };
        let text = error(&missing);
        assert!(text.starts_with("tls_cert ") && text.contains("nope.pem: cannot read"), "{text}");

        let text = error(&dir.files("", &key));
        assert!(text.starts_with("tls_cert ") && text.contains("no CERTIFICATE block"), "{text}");

        let text = error(&dir.files(&cert, ""));
        assert!(text.starts_with("tls_key ") && text.contains("no PRIVATE KEY block"), "{text}");

        // A certificate where the key should be.
        let text = error(&dir.files(&cert, &cert));
        assert!(text.starts_with("tls_key ") && text.contains("no PRIVATE KEY block"), "{text}");

        let garbled = key.replace("-----END PRIVATE KEY-----", "");
        let text = error(&dir.files(&cert, &garbled));
        assert!(text.starts_with("tls_key ") && text.contains("not a PEM private key"), "{text}");

        let text = error(&dir.files(&cert, &other_key));
        assert!(text.starts_with("tls_key ") && text.contains("does not belong to the first certificate"), "{text}");

        // No message quotes the key.
        let body: String = key.lines().filter(|line| !line.starts_with("-----")).collect();
        for files in [dir.files(&cert, &garbled), dir.files(&cert, &other_key)] {
            let text = error(&files);
            assert!(!text.contains(&body[..16]), "{text}");
        }
    }

    #[test]
    fn a_reload_serves_the_new_files_and_a_bad_one_keeps_the_old() {
        let dir = Files::new();
        let (first_cert, first_key) = pair();
        let files = dir.files(&first_cert, &first_key);
        let tls = Tls::load(&files).expect("load");
        assert_eq!(tls.current_certificate(), leaf_der(&first_cert));

        let (second_cert, second_key) = pair();
        dir.files(&second_cert, &second_key);
        tls.reload().expect("reload");
        assert_eq!(tls.current_certificate(), leaf_der(&second_cert));

        // Half-written: the new certificate with the old key.
        let (third_cert, _) = pair();
        dir.files(&third_cert, &second_key);
        let text = tls.reload().expect_err("refused").to_string();
        assert!(text.contains("does not belong"), "{text}");
        assert_eq!(tls.current_certificate(), leaf_der(&second_cert), "the old certificate stays");

        std::fs::remove_file(&files.key).expect("remove");
        assert!(tls.reload().is_err());
        assert_eq!(tls.current_certificate(), leaf_der(&second_cert), "the old certificate stays");
    }
}
