//! A real SMTP server for the e-mail tests: Python's aiosmtpd (from PyPI,
//! see [`python`] for how it is installed), run by testkit/smtp_server.py
//! on a free port of 127.0.0.1, with STARTTLS or TLS from the first byte
//! (a certificate from a CA made for each server, see
//! [`SmtpServer::ca_pem`]), `AUTH PLAIN`/`LOGIN`, and switches to answer
//! the next messages with 451 or 550. Each message it accepts is saved as
//! it arrived and read back parsed ([`SmtpServer::messages`]). The Python
//! process ends when the server is dropped (and on its own when the test
//! process dies: it exits when its stdin closes).

pub mod python;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

pub use python::AIOSMTPD_VERSION;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/smtp_server.py");

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("cannot install the test SMTP server's Python packages: {message}")]
    Install { message: String },
    #[error("the test SMTP server did not start: {0}")]
    Start(String),
    #[error("the test SMTP server did not answer a command: {0}")]
    Control(String),
    #[error("cannot read a message the test SMTP server received ({path}): {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot make the test certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How the connection is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tls {
    /// Plain, and STARTTLS is not offered.
    #[default]
    None,
    /// Plain, with STARTTLS offered; AUTH only after it.
    Starttls,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

/// What [`SmtpServer::start`] starts.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub tls: Tls,
    /// User name and password that must log in before MAIL (none: no AUTH).
    pub credentials: Option<(String, String)>,
    /// A refused login is answered with the user name and password it was
    /// sent, as careless servers do.
    pub echo_credentials: bool,
}

/// The server's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub accepted: u64,
    /// Messages refused by [`SmtpServer::reject_next`].
    pub rejected: u64,
    /// Refused logins.
    pub auth_failures: u64,
}

/// A message the server accepted.
#[derive(Clone, Debug, Default)]
pub struct Received {
    /// The envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`), in order.
    pub rcpt_tos: Vec<String>,
    /// Whether the message came over an encrypted connection.
    pub tls: bool,
    /// Who had logged in, if anyone.
    pub user: Option<String>,
    pub subject: Option<String>,
    /// Without the angle brackets (as mail-parser gives it).
    pub message_id: Option<String>,
    /// The Date header, as RFC 3339.
    pub date: Option<String>,
    /// Addresses of the From header.
    pub from: Vec<String>,
    /// Addresses of the To header.
    pub to: Vec<String>,
    /// The top-level `Content-Type`, e.g. `multipart/alternative`.
    pub content_type: String,
    /// The text/plain part, decoded (only a real part: not made from the HTML).
    pub text: Option<String>,
    /// The text/html part, decoded.
    pub html: Option<String>,
    /// Every top-level header as it arrived (name, raw value).
    pub headers: Vec<(String, String)>,
    /// The message as it arrived.
    pub raw: Vec<u8>,
}

struct Control {
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// A running server; it stops when dropped.
pub struct SmtpServer {
    port: u16,
    ca_pem: Option<String>,
    dir: tempfile::TempDir,
    control: tokio::sync::Mutex<Control>,
    child: Child,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl SmtpServer {
    /// Installs aiosmtpd when needed, then starts a server.
    pub async fn start(opts: Options) -> Result<SmtpServer, SmtpError> {
        let python = tokio::task::spawn_blocking(python::ensure_installed)
            .await
            .map_err(|e| SmtpError::Start(format!("the install task failed: {e}")))??;
        let dir = tempfile::Builder::new().prefix("retl-test-smtp-").tempdir()?;
        let messages = dir.path().join("messages");
        std::fs::create_dir_all(&messages)?;
        let log_path = dir.path().join("server.log");
        let mut cmd = tokio::process::Command::new(&python.exe);
        cmd.arg(SCRIPT).arg("--dir").arg(&messages);
        if let Some(p) = &python.pythonpath {
            cmd.env("PYTHONPATH", p);
        }
        let mut ca_pem = None;
        if opts.tls != Tls::None {
            let (ca, cert, key) = certificates()?;
            let (cert_path, key_path) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::write(&cert_path, cert)?;
            std::fs::write(&key_path, key)?;
            cmd.arg("--tls").arg(if opts.tls == Tls::Starttls { "starttls" } else { "implicit" });
            cmd.arg("--cert").arg(cert_path).arg("--key").arg(key_path);
            ca_pem = Some(ca);
        }
        if opts.echo_credentials {
            cmd.arg("--echo-credentials");
        }
        // In the environment, not the command line, which `ps` shows.
        if let Some((user, password)) = &opts.credentials {
            cmd.env("RETL_SMTP_USER", user).env("RETL_SMTP_PASSWORD", password);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path)?)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SmtpError::Start(format!("cannot run {}: {e}", python.exe.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(SmtpError::Start("no pipes to the server".to_string()));
        };
        let mut stdout = BufReader::new(stdout).lines();
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let first = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .map_err(|_| SmtpError::Start(format!("no port within 30 s; its log:\n{}", log())))??
            .ok_or_else(|| SmtpError::Start(format!("it exited; its log:\n{}", log())))?;
        let port = serde_json::from_str::<Value>(&first)
            .ok()
            .and_then(|v| v["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| SmtpError::Start(format!("it printed {first:?}; its log:\n{}", log())))?;
        Ok(SmtpServer { port, ca_pem, dir, control: tokio::sync::Mutex::new(Control { stdin, stdout }), child })
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that issued the server's certificate (valid for 127.0.0.1 and
    /// localhost), to trust it; `None` without TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The next `count` messages are refused at the end of DATA with `code`:
    /// 451 (try again later) or 550 (refused for good).
    pub async fn reject_next(&self, code: u16, count: u32) -> Result<(), SmtpError> {
        self.command(json!({"cmd": "reject", "code": code, "count": count})).await.map(|_| ())
    }

    pub async fn stats(&self) -> Result<Stats, SmtpError> {
        self.command(json!({"cmd": "stats"})).await
    }

    async fn command(&self, cmd: Value) -> Result<Stats, SmtpError> {
        let mut c = self.control.lock().await;
        let line = format!("{cmd}\n");
        c.stdin.write_all(line.as_bytes()).await?;
        c.stdin.flush().await?;
        let answer = tokio::time::timeout(Duration::from_secs(10), c.stdout.next_line())
            .await
            .map_err(|_| SmtpError::Control("no answer within 10 s".to_string()))??
            .ok_or_else(|| SmtpError::Control("the server exited".to_string()))?;
        let v: Value = serde_json::from_str(&answer).map_err(|e| SmtpError::Control(format!("{answer:?}: {e}")))?;
        if v["ok"] != json!(true) {
            return Err(SmtpError::Control(v["error"].as_str().unwrap_or(&answer).to_string()));
        }
        let n = |k: &str| v[k].as_u64().unwrap_or_default();
        Ok(Stats { accepted: n("accepted"), rejected: n("rejected"), auth_failures: n("auth_failures") })
    }

    /// What aiosmtpd logged (connections, commands, errors), for a failing test.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Every message accepted so far, in arrival order.
    pub fn messages(&self) -> Result<Vec<Received>, SmtpError> {
        let dir = self.dir.path().join("messages");
        let mut envelopes: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        envelopes.sort();
        envelopes.iter().map(|path| read_message(path)).collect()
    }
}

fn read_message(envelope_path: &std::path::Path) -> Result<Received, SmtpError> {
    let failed = |path: &std::path::Path, message: String| SmtpError::Read { path: path.to_path_buf(), message };
    let envelope: Value = std::fs::read(envelope_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|m| failed(envelope_path, m))?;
    let eml = envelope_path.with_extension("eml");
    let raw = std::fs::read(&eml).map_err(|e| failed(&eml, e.to_string()))?;
    let message = mail_parser::MessageParser::default().parse(&raw).ok_or_else(|| failed(&eml, "not a message".to_string()))?;
    let addresses = |a: Option<&mail_parser::Address>| -> Vec<String> {
        a.map(|a| a.iter().filter_map(|x| x.address().map(str::to_string)).collect()).unwrap_or_default()
    };
    let mut received = Received {
        mail_from: envelope["mail_from"].as_str().unwrap_or_default().to_string(),
        rcpt_tos: envelope["rcpt_tos"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        tls: envelope["tls"] == json!(true),
        user: envelope["user"].as_str().map(str::to_string),
        subject: message.subject().map(str::to_string),
        message_id: message.message_id().map(str::to_string),
        date: message.date().map(|d| d.to_rfc3339()),
        from: addresses(message.from()),
        to: addresses(message.to()),
        content_type: message.header_raw("Content-Type").unwrap_or_default().trim().to_string(),
        headers: message.headers_raw().map(|(k, v)| (k.to_string(), v.trim().to_string())).collect(),
        ..Received::default()
    };
    // The parts themselves: mail-parser's body_text() would make a text
    // from the HTML when there is none, hiding a missing part.
    for part in &message.parts {
        match &part.body {
            mail_parser::PartType::Text(t) if received.text.is_none() => received.text = Some(t.to_string()),
            mail_parser::PartType::Html(h) if received.html.is_none() => received.html = Some(h.to_string()),
            _ => {}
        }
    }
    received.raw = raw;
    Ok(received)
}

/// A CA, and a server certificate it issued for 127.0.0.1 and localhost:
/// (CA PEM, certificate PEM, key PEM).
fn certificates() -> Result<(String, String, String), SmtpError> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "retl test SMTP CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.subject_alt_names.push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let cert = params.signed_by(&key, &issuer)?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}
