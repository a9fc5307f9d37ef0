//! An mTLS HTTP/1.1 keep-alive client connection (rustls, ring provider),
//! presenting the caller's X.509-SVID.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::http::{read_message, Message};

pub fn tls_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    resume: bool,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_pem).map_err(|e| format!("{ca_pem}: {e}"))? {
        roots
            .add(c.map_err(|e| format!("{ca_pem}: {e}"))?)
            .map_err(|e| format!("{ca_pem}: {e}"))?;
    }
    let chain = CertificateDer::pem_file_iter(cert_pem)
        .map_err(|e| format!("{cert_pem}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{cert_pem}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|e| format!("{key_pem}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("client certificate: {e}"))?;
    if !resume {
        // Every connection does a full handshake. With TLS session resumption
        // Envoy 1.40 reports `connection.peer_certificate_valid` false on the
        // resumed connection and Custody refuses it (no_identity); see
        // docs/performance.md.
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

pub struct Conn {
    stream: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects and completes the handshake (so it is not in the first latency).
    pub fn open(addr: &str, config: &Arc<ClientConfig>) -> Result<Conn, String> {
        let tcp = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let tls = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
        let mut stream = StreamOwned::new(tls, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        }
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends one pre-serialised request and reads its response.
    pub fn roundtrip(&mut self, request: &[u8]) -> Result<Message, String> {
        self.stream
            .write_all(request)
            .and_then(|()| self.stream.flush())
            .map_err(|e| format!("send: {e}"))?;
        match read_message(&mut self.stream, &mut self.buf) {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err("the proxy closed the connection".into()),
            Err(e) => Err(format!("read: {e}")),
        }
    }
}
