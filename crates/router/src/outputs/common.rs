//! What every output's configuration shares: errors that name the field at fault, secrets
//! given inline or through a `<key>_file`, URL checks, and the outbound TLS settings.

pub use aerie_alert::Secret;

/// A field of one output's configuration is wrong: `field` is relative to the output
/// (`webhook_url_file`, `fsync`); the loader adds the output's path and the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &str, reason: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A secret given inline (`field`) or as a file to read (`<field>_file`: a mounted Kubernetes
/// Secret), trimmed.
pub fn secret(
    field: &str,
    inline: &Option<String>,
    file: &Option<String>,
) -> Result<Option<Secret>, FieldError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(FieldError::new(
            field,
            format!("set either {field} or {field}_file, not both"),
        )),
        (Some(v), None) => Ok(Some(Secret::new(v.trim()))),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|s| Some(Secret::new(s.trim())))
            .map_err(|e| {
                FieldError::new(
                    &format!("{field}_file"),
                    format!("cannot read secret file {path}: {e}"),
                )
            }),
        (None, None) => Ok(None),
    }
}

/// An `http://` or `https://` URL, or an error on `field`.
pub fn http_url(field: &str, url: Secret) -> Result<Secret, FieldError> {
    let u = url.expose();
    if u.starts_with("http://") || u.starts_with("https://") {
        Ok(url)
    } else {
        Err(FieldError::new(field, "must be an http:// or https:// URL"))
    }
}

/// Outbound TLS of an HTTP output (`tls:`), as the shared HTTP client takes it.
pub use aerie_http_client::TlsOptions as TlsConfig;

/// The settings an output's sink is opened with, besides its own.
#[derive(Debug, Clone)]
pub struct OpenContext<'a> {
    pub name: &'a str,
    pub timeout: std::time::Duration,
    pub tls: &'a TlsConfig,
    /// HTTP outputs: send through this proxy (else `HTTPS_PROXY`/`NO_PROXY` apply).
    pub proxy: Option<&'a str>,
}

/// What a kind's falcosidekick environment names set outside the kind's own keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnvShared {
    /// `WEBHOOK_CHECKCERT=false`: `tls.insecure: true`.
    pub tls_insecure: bool,
}
