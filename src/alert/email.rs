//! Sending an alert as an e-mail through an SMTP server (lettre's async
//! transport on tokio, rustls with the system's trust store).
//!
//! The SMTP user name and password never appear in an error or a log line:
//! a server that echoes them back (as text, or as the base64 of an `AUTH`
//! line) has them masked.

use std::time::Duration;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::delivery::{DeliveryError, Failed, RetryPolicy, snippet, with_retries};
use crate::api::SmtpTls;
use crate::mask::Masker;

/// How long one attempt (connect, TLS, login, send) may take in all.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a server's reply goes into a message.
const REPLY_CHARS: usize = 300;

/// Where and how to send.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// User name and password for `AUTH` (PLAIN or LOGIN), sent only once the
    /// connection is encrypted unless `tls` is [`SmtpTls::None`].
    pub credentials: Option<(String, String)>,
    /// A CA certificate (PEM) trusted besides the system's, for a server whose
    /// certificate a private CA issued (a company relay; the test server).
    pub extra_root_certificate_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for SmtpServer {
    /// Without the credentials (they are secrets, the user name included).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpServer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("credentials", &self.credentials.as_ref().map(|_| "***"))
            .field("extra_root_certificate_pem", &self.extra_root_certificate_pem.as_ref().map(|p| format!("{} bytes", p.len())))
            .finish()
    }
}

/// One alert e-mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// Sender, `alerts@example.com` or `retl <alerts@example.com>`.
    pub from: String,
    /// Recipients, each as `from` is.
    pub to: Vec<String>,
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The same as HTML.
    pub html: String,
    /// `<unique@domain>` (the angle brackets are added when missing). Kept
    /// the same for every attempt of one alert, so that a mail client shows
    /// a message that a retry delivered twice only once.
    pub message_id: String,
}

/// Checks that `addr` is an e-mail address (`name@example.com`, with or
/// without a display name: `Data team <data@example.com>`).
pub fn check_address(addr: &str) -> Result<(), String> {
    mailbox(addr).map(|_| ())
}

fn mailbox(addr: &str) -> Result<Mailbox, String> {
    // Addresses are not secrets: the message quotes the one that is wrong.
    addr.trim().parse::<Mailbox>().map_err(|e| {
        format!(
            "{addr:?} is not an e-mail address ({}; expected name@example.com or Name <name@example.com>)",
            e.to_string().to_lowercase()
        )
    })
}

/// Sends `mail` through `server`, retrying as `retry` says.
///
/// Connection failures, timeouts and 4xx replies (the server is busy, or
/// greylists) are retried and end `Transient` (`SmtpUnreachable`,
/// `SmtpDeferred`). These end `Permanent`: an address that is not one
/// (`InvalidAddress`), a refused login (`SmtpAuthenticationFailed`), any
/// other 5xx reply (`SmtpRejected`), a server without STARTTLS when
/// [`SmtpTls::Starttls`] asks for it (`SmtpStarttlsUnavailable`), and a
/// TLS handshake or certificate that fails (`SmtpTlsFailed`).
///
/// A reply lost after the message was handed over (a timeout at the very
/// end) is retried too, so a recipient may rarely get an alert twice (with
/// the same Message-ID); never getting it would be worse.
pub async fn send(server: &SmtpServer, mail: &OutgoingEmail, retry: &RetryPolicy) -> Result<(), DeliveryError> {
    let (envelope, bytes) = compose(mail)?;
    crate::install_crypto_provider();
    let transport = transport(server)?;
    let masker = credentials_masker(server);
    with_retries(retry, "email", || async {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, transport.send_raw(&envelope, &bytes)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(judge(&e, server, &masker)),
            Err(_) => Err(Failed::retry(
                "SmtpUnreachable",
                format!("the SMTP server {} did not finish the exchange within {} s", endpoint(server), ATTEMPT_TIMEOUT.as_secs()),
            )),
        }
    })
    .await
}

/// The envelope and the message as sent: multipart/alternative (text, then
/// HTML, so that clients show the HTML when they can), From, To, Subject,
/// Date, Message-ID.
fn compose(mail: &OutgoingEmail) -> Result<(lettre::address::Envelope, Vec<u8>), DeliveryError> {
    let invalid = |message: String| DeliveryError::Permanent { reason: "InvalidAddress", message };
    let from = mailbox(&mail.from).map_err(|e| invalid(format!("the sender {e}")))?;
    if mail.to.is_empty() {
        return Err(invalid("the alert has no recipient".to_string()));
    }
    let id = mail.message_id.trim();
    let id = if id.starts_with('<') { id.to_string() } else { format!("<{id}>") };
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(mail.subject.as_str())
        .date_now()
        .message_id(Some(id))
        .user_agent(format!("retl/{}", env!("CARGO_PKG_VERSION")))
        .header(AutoSubmitted);
    for to in &mail.to {
        builder = builder.to(mailbox(to).map_err(|e| invalid(format!("the recipient {e}")))?);
    }
    let message = builder
        .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
        .map_err(|e| DeliveryError::Permanent { reason: "InvalidAddress", message: format!("the e-mail cannot be composed ({e})") })?;
    Ok((message.envelope().clone(), message.formatted()))
}

/// `Auto-Submitted: auto-generated` (RFC 3834): vacation responders and
/// mailing lists do not answer an alert, so alerts cannot start mail loops.
#[derive(Clone, Debug)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

fn transport(server: &SmtpServer) -> Result<AsyncSmtpTransport<Tokio1Executor>, DeliveryError> {
    let tls = match server.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => Tls::Required(tls_parameters(server)?),
        SmtpTls::Tls => Tls::Wrapper(tls_parameters(server)?),
    };
    // "dangerous" only because this builder starts without TLS; it is set here.
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server.host.as_str())
        .port(server.port)
        .tls(tls)
        .timeout(Some(ATTEMPT_TIMEOUT));
    if let Some((user, password)) = &server.credentials {
        builder =
            builder.credentials(Credentials::new(user.clone(), password.clone())).authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    Ok(builder.build())
}

fn tls_parameters(server: &SmtpServer) -> Result<TlsParameters, DeliveryError> {
    let failed = |message: String| DeliveryError::Permanent { reason: "SmtpTlsFailed", message };
    let mut builder = TlsParameters::builder(server.host.clone());
    if let Some(pem) = &server.extra_root_certificate_pem {
        let cert = Certificate::from_pem(pem).map_err(|e| failed(format!("the extra root certificate is not a PEM certificate ({e})")))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build_rustls().map_err(|e| failed(format!("cannot set up TLS for {} ({e})", endpoint(server))))
}

/// The credentials as they are and as an `AUTH PLAIN` line carries them.
fn credentials_masker(server: &SmtpServer) -> Masker {
    match &server.credentials {
        None => Masker::default(),
        Some((user, password)) => {
            Masker::from_values([user.as_str(), password, &format!("\0{user}\0{password}"), &format!("{user}\0{password}")])
        }
    }
}

fn endpoint(server: &SmtpServer) -> String {
    format!("{}:{}", server.host, server.port)
}

/// What a failed attempt means. lettre tells replies (with their code) and
/// connection errors apart, but reports a failed TLS handshake as a
/// connection error (rustls' error inside an I/O error), and its own
/// refusals (no STARTTLS, no usable AUTH mechanism) by their text only.
fn judge(e: &lettre::transport::smtp::Error, server: &SmtpServer, masker: &Masker) -> Failed {
    let at = endpoint(server);
    let text = snippet(&masker.owned(cause(e)), REPLY_CHARS);
    if let Some(code) = e.status() {
        let code = code.to_string();
        let reply = format!("the SMTP server {at} answered {code}: {text}");
        return match code.as_str() {
            "530" | "534" | "535" | "538" if server.credentials.is_none() => Failed::permanent(
                "SmtpAuthenticationFailed",
                format!("{reply}; the server wants a login: set usernameSecretRef and passwordSecretRef"),
            ),
            "530" | "534" | "535" | "538" => Failed::permanent(
                "SmtpAuthenticationFailed",
                format!(
                    "{reply}; check the user name and password in the Secrets (some providers want an app password, not the account's)"
                ),
            ),
            _ if e.is_permanent() => Failed::permanent(
                "SmtpRejected",
                format!("{reply}; check that the server lets this user send as the sender address, and that the recipients exist"),
            ),
            _ => Failed::retry("SmtpDeferred", reply),
        };
    }
    if e.is_client() && text.contains("STARTTLS is not supported") {
        return Failed::permanent(
            "SmtpStarttlsUnavailable",
            format!(
                "the SMTP server {at} does not offer STARTTLS, \
                 so retl did not send (the login and the alert would cross the network unencrypted); \
                 set smtpTls: tls if the server expects TLS from the first byte (usually port 465), \
                 or smtpTls: none only for a relay on localhost or inside the cluster"
            ),
        );
    }
    if e.is_client() && text.contains("No compatible authentication mechanism") {
        return Failed::permanent(
            "SmtpAuthenticationFailed",
            format!(
                "the SMTP server {at} offers no login retl can use (PLAIN or LOGIN) on this connection; \
                 many servers offer it only once the connection is encrypted: check smtpTls"
            ),
        );
    }
    if e.is_tls() || is_tls_failure(e) {
        return Failed::permanent(
            "SmtpTlsFailed",
            format!(
                "TLS with the SMTP server {at} failed: {text}; check that smtpTls matches the port (starttls for 587, \
                 tls for 465), and that the server's certificate is valid for {} and issued by a CA this system trusts",
                server.host
            ),
        );
    }
    if e.is_client() {
        return Failed::permanent("SmtpRejected", format!("the e-mail cannot be sent through {at}: {text}"));
    }
    let hint = if e.is_response() { "; is it an SMTP server, and does smtpTls match what it expects?" } else { "" };
    Failed::retry("SmtpUnreachable", format!("cannot send through the SMTP server {at}: {text}{hint}"))
}

/// The innermost cause: the server's text for a reply, the system's for a
/// connection error (lettre's own messages only wrap it, sometimes twice).
fn cause(e: &lettre::transport::smtp::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

/// Whether rustls failed somewhere in the chain (an I/O error carries it
/// inside, where `source()` does not reach).
fn is_tls_failure(e: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let inner = s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        if s.is::<rustls::Error>() || inner.is_some_and(|i| i.is::<rustls::Error>()) {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail() -> OutgoingEmail {
        OutgoingEmail {
            from: "retl <alerts@example.com>".into(),
            to: vec!["data@example.com".into(), "Ops <ops@example.org>".into()],
            subject: "Sync failed: customers — 3 records".into(),
            text: "plain".into(),
            html: "<p>html</p>".into(),
            message_id: "sync-1.slack@retl.dev".into(),
        }
    }

    #[test]
    fn addresses_are_checked_and_named_when_wrong() {
        assert_eq!(check_address("Data team <data@example.com>"), Ok(()));
        assert_eq!(check_address("data@example.com"), Ok(()));
        let err = check_address("data.example.com").unwrap_err();
        assert!(err.starts_with("\"data.example.com\" is not an e-mail address ("), "{err}");
        let mut m = mail();
        m.to.push("nobody".into());
        let err = compose(&m).unwrap_err();
        assert_eq!(err.reason(), "InvalidAddress");
        assert!(err.is_permanent() && err.message().contains("the recipient \"nobody\""), "{err}");
        m.to.clear();
        assert_eq!(compose(&m).unwrap_err().message(), "the alert has no recipient");
    }

    #[test]
    fn the_message_has_the_headers_and_both_parts() {
        let (envelope, bytes) = compose(&mail()).unwrap();
        assert_eq!(envelope.to().len(), 2);
        let text = String::from_utf8(bytes).unwrap();
        for header in ["Message-ID: <sync-1.slack@retl.dev>", "Date: ", "Auto-Submitted: auto-generated", "multipart/alternative"] {
            assert!(text.contains(header), "{header} in {text}");
        }
        assert!(text.find("text/plain").unwrap() < text.find("text/html").unwrap(), "{text}");
    }

    #[test]
    fn credentials_do_not_show_in_debug_output() {
        let server = SmtpServer {
            host: "smtp.example.com".into(),
            port: 587,
            tls: SmtpTls::Starttls,
            credentials: Some(("us3r-name".into(), "pa55-word".into())),
            extra_root_certificate_pem: None,
        };
        let debug = format!("{server:?}");
        assert!(!debug.contains("us3r-name") && !debug.contains("pa55-word"), "{debug}");
    }
}
