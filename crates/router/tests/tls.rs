//! TLS for HTTP outputs against a real mTLS server on 127.0.0.1 (certificates made with the
//! openssl CLI): a private CA, a client certificate, and `insecure` only when asked for.

mod common;
#[path = "common/pki.rs"]
mod pki;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::{FALCO_DOC_ALERT, post, start_router, temp_dir};
use pki::make_pki;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// An HTTPS server that requires a client certificate from the test CA; counts requests.
async fn mtls_server(dir: &Path) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let certs: Vec<_> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let c = counter.clone();
        async move {
            c.fetch_add(1, Relaxed);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // Handshake failures (no or untrusted client certificate) just drop the connection.
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
                }
            });
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn mtls_with_private_ca_and_insecure_only_on_opt_in() {
    let dir = temp_dir("tls");
    make_pki(&dir);
    let (addr, hits) = mtls_server(&dir).await;
    let d = dir.display();
    let url = format!("https://127.0.0.1:{}/hook", addr.port());
    let yaml = format!(
        r#"
outputs:
  - {{name: trusted, type: webhook, url: "{url}", retry: {{max_attempts: 1}},
      tls: {{ca_file: {d}/ca.pem, client_cert_file: {d}/client.pem, client_key_file: {d}/client.key}}}}
  - {{name: no-ca, type: webhook, url: "{url}", retry: {{max_attempts: 1}},
      tls: {{client_cert_file: {d}/client.pem, client_key_file: {d}/client.key}}}}
  - {{name: no-client-cert, type: webhook, url: "{url}", retry: {{max_attempts: 1}}, tls: {{ca_file: {d}/ca.pem}}}}
  - {{name: insecure, type: webhook, url: "{url}", retry: {{max_attempts: 1}},
      tls: {{insecure: true, client_cert_file: {d}/client.pem, client_key_file: {d}/client.key}}}}
"#
    );
    let r = start_router(&yaml).await;
    assert_eq!(post(r.addr, "/", FALCO_DOC_ALERT).await.0, 200);
    let m = &r.core.metrics;
    let done = |i: usize| m.output(i).delivered.load(Relaxed) + m.output(i).failed.load(Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..4).map(done).sum::<u64>() < 4 {
        assert!(Instant::now() < deadline, "deliveries did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered: Vec<u64> = (0..4)
        .map(|i| m.output(i).delivered.load(Relaxed))
        .collect();
    // Verified against the private CA with a client certificate: delivered. Without the CA, the
    // server is untrusted; without a client certificate, the server refuses the handshake.
    // `insecure: true` skips server verification, and only then does an unknown CA pass.
    assert_eq!(delivered, [1, 0, 0, 1]);
    assert_eq!(hits.load(Relaxed), 2);
    r.shutdown().await.unwrap();
}
