//! How every command reaches NATS. The connection flags (`--nats`, `--lattice`, `--creds`,
//! `--user`/`--password`, `--tls-ca`/`--tls-cert`/`--tls-key`), their `TRELLIS_*` environment
//! variables and the `[nats]` section of the config file are resolved here, in that order of
//! precedence, into [`NatsSettings`]; the one place that turns those into
//! `async_nats::ConnectOptions` is [`NatsSettings::options`], used by the client commands and
//! by the controller and node that `trellis controller|node|up` start.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use crate::config::{ConfigFile, NatsSection};

pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
pub const DEFAULT_LATTICE: &str = "default";

/// Where `--help` lists these flags.
const HEADING: &str = "Connection";

/// The connection flags, as every command that talks to NATS takes them.
#[derive(Args, Clone, Debug, Default)]
pub struct ConnectArgs {
    /// NATS server to connect to [default: nats://127.0.0.1:4222].
    #[arg(help_heading = HEADING, long, env = "TRELLIS_NATS", value_name = "URL")]
    pub nats: Option<String>,
    /// Lattice name: several lattices can share one NATS server [default: default].
    #[arg(help_heading = HEADING, long, env = "TRELLIS_LATTICE", value_name = "NAME")]
    pub lattice: Option<String>,
    /// NATS credentials file (a user JWT and its nkey seed, as `nsc` writes them).
    #[arg(help_heading = HEADING, long, env = "TRELLIS_CREDS", value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// NATS user name (with --password).
    #[arg(help_heading = HEADING, long, env = "TRELLIS_USER")]
    pub user: Option<String>,
    /// NATS password (with --user). Prefer TRELLIS_PASSWORD or the config file: flags show in `ps`.
    #[arg(help_heading = HEADING, long, env = "TRELLIS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// CA certificate (PEM) to trust the NATS server's TLS certificate with; turns TLS on.
    #[arg(help_heading = HEADING, long, env = "TRELLIS_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS (with --tls-key).
    #[arg(help_heading = HEADING, long, env = "TRELLIS_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS (with --tls-cert).
    #[arg(help_heading = HEADING, long, env = "TRELLIS_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// TOML config file: [nats] connection settings (flags and TRELLIS_* variables win over
    /// them), and for the controller [plugins].
    #[arg(help_heading = HEADING, long, env = "TRELLIS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConnectArgs {
    /// The config file, if one was named.
    pub fn config_file(&self) -> anyhow::Result<Option<ConfigFile>> {
        self.config.as_deref().map(ConfigFile::load).transpose()
    }

    /// Flags and environment over the config file's `[nats]`, over the defaults.
    pub fn resolve(&self) -> anyhow::Result<NatsSettings> {
        let file = self.config_file()?.map(|f| f.nats).unwrap_or_default();
        self.resolve_over(&file)
    }

    /// Whether a NATS URL was given at all (flag, environment or config file): `trellis up`
    /// starts its own nats-server only when none was.
    pub fn url_given(&self) -> anyhow::Result<bool> {
        let file = self.config_file()?.map(|f| f.nats).unwrap_or_default();
        Ok(self.nats.is_some() || file.url.is_some())
    }

    pub fn resolve_over(&self, file: &NatsSection) -> anyhow::Result<NatsSettings> {
        fn pick<T: Clone>(flag: &Option<T>, file: &Option<T>) -> Option<T> {
            flag.clone().or_else(|| file.clone())
        }
        let settings = NatsSettings {
            url: pick(&self.nats, &file.url).unwrap_or_else(|| DEFAULT_NATS_URL.into()),
            lattice: pick(&self.lattice, &file.lattice).unwrap_or_else(|| DEFAULT_LATTICE.into()),
            creds: pick(&self.creds, &file.creds),
            user: pick(&self.user, &file.user),
            password: pick(&self.password, &file.password),
            tls_ca: pick(&self.tls_ca, &file.tls_ca),
            tls_cert: pick(&self.tls_cert, &file.tls_cert),
            tls_key: pick(&self.tls_key, &file.tls_key),
        };
        settings.check()?;
        Ok(settings)
    }
}

/// The subject prefix of the controller API, as wadm's `--api-prefix` sets it: taken by
/// `trellis controller` (where it serves the API) and the client commands (where they ask).
#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// Subject prefix of the controller API (wadm's --api-prefix): requests go to
    /// `{prefix}.{lattice}.model.*`. Give a controller and its clients the same one.
    #[arg(help_heading = HEADING, long, env = "TRELLIS_API_PREFIX", value_name = "PREFIX",
          default_value = trellis_lattice::api::DEFAULT_API_PREFIX,
          value_parser = parse_api_prefix)]
    pub api_prefix: String,
}

impl Default for ApiArgs {
    fn default() -> Self {
        Self {
            api_prefix: trellis_lattice::api::DEFAULT_API_PREFIX.into(),
        }
    }
}

/// `--api-prefix`, trimmed of spaces and dots as wadm does, refused with why if it cannot be one.
fn parse_api_prefix(s: &str) -> Result<String, String> {
    trellis_lattice::api::api_prefix(s)
}

/// `-d/--domain`: one JetStream domain name (no dots, wildcards or spaces: it becomes the
/// token of `$JS.{domain}.API`).
pub fn parse_domain(s: &str) -> Result<String, String> {
    let bad = s.is_empty()
        || s.contains(['.', '*', '>'])
        || s.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad {
        return Err(format!(
            "`{s}` is not a JetStream domain: give one name without dots, spaces or wildcards (as in the server's `jetstream {{ domain: … }}`)"
        ));
    }
    Ok(s.to_string())
}

/// Where NATS is and how to authenticate, resolved from every source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsSettings {
    pub url: String,
    pub lattice: String,
    pub creds: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self::new(DEFAULT_NATS_URL, DEFAULT_LATTICE)
    }
}

impl NatsSettings {
    /// No credentials, no TLS.
    pub fn new(url: &str, lattice: &str) -> Self {
        Self {
            url: url.into(),
            lattice: lattice.into(),
            creds: None,
            user: None,
            password: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }

    /// Combinations that cannot work, refused before anything connects.
    fn check(&self) -> anyhow::Result<()> {
        match (&self.user, &self.password) {
            (Some(_), None) => bail!("--user needs --password (or TRELLIS_PASSWORD)"),
            (None, Some(_)) => bail!("--password needs --user (or TRELLIS_USER)"),
            _ => {}
        }
        if self.creds.is_some() && self.user.is_some() {
            bail!("give either --creds or --user/--password, not both: NATS checks one of them");
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => bail!("--tls-cert needs --tls-key (the certificate's private key)"),
            (None, Some(_)) => bail!("--tls-key needs --tls-cert (the client certificate)"),
            _ => {}
        }
        for (flag, path) in [
            ("--creds", &self.creds),
            ("--tls-ca", &self.tls_ca),
            ("--tls-cert", &self.tls_cert),
            ("--tls-key", &self.tls_key),
        ] {
            if let Some(path) = path {
                if !path.is_file() {
                    bail!("{flag} {}: no such file", path.display());
                }
            }
        }
        Ok(())
    }

    /// The connect options these settings mean: the one place they are built.
    pub async fn options(&self) -> anyhow::Result<async_nats::ConnectOptions> {
        let mut options = match &self.creds {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .with_context(|| {
                    format!("cannot read the NATS credentials file {}", path.display())
                })?,
            None => async_nats::ConnectOptions::new(),
        };
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        Ok(options)
    }

    /// Connects, with an error that says what to check when it fails.
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        let options = self.options().await?.name("trellis-cli");
        trellis_bus::connect(&self.url, options).await
    }

    /// How we authenticate, for `trellis up` to print (never the password).
    pub fn auth_summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(creds) = &self.creds {
            parts.push(format!("credentials {}", creds.display()));
        }
        if let Some(user) = &self.user {
            parts.push(format!("user {user}"));
        }
        if self.tls_ca.is_some() || self.tls_cert.is_some() {
            parts.push("TLS".to_string());
        }
        if parts.is_empty() {
            "no authentication".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_config_file_which_wins_over_defaults() {
        let file = NatsSection {
            url: Some("nats://from-file:4222".into()),
            lattice: Some("file-lattice".into()),
            user: Some("file-user".into()),
            password: Some("file-pass".into()),
            ..Default::default()
        };
        let args = ConnectArgs {
            lattice: Some("flag-lattice".into()),
            ..Default::default()
        };
        let s = args.resolve_over(&file).unwrap();
        assert_eq!(s.url, "nats://from-file:4222");
        assert_eq!(s.lattice, "flag-lattice");
        assert_eq!(s.user.as_deref(), Some("file-user"));

        let s = ConnectArgs::default()
            .resolve_over(&NatsSection::default())
            .unwrap();
        assert_eq!(s, NatsSettings::default());
    }

    #[test]
    fn api_prefixes_and_domains_are_checked_when_parsed() {
        assert_eq!(ApiArgs::default().api_prefix, "wadm.api");
        assert_eq!(parse_api_prefix("acme.wadm.").unwrap(), "acme.wadm");
        assert!(parse_api_prefix("wadm.*").is_err());
        assert_eq!(parse_domain("hub").unwrap(), "hub");
        for bad in ["", "a.b", "h*", "a b"] {
            assert!(parse_domain(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn half_given_credentials_are_refused_before_connecting() {
        let only_user = ConnectArgs {
            user: Some("a".into()),
            ..Default::default()
        };
        let err = only_user.resolve().unwrap_err().to_string();
        assert!(err.contains("--password"), "{err}");

        let both = ConnectArgs {
            user: Some("a".into()),
            password: Some("b".into()),
            creds: Some("/".into()),
            ..Default::default()
        };
        assert!(both.resolve().unwrap_err().to_string().contains("not both"));

        let cert_only = ConnectArgs {
            tls_cert: Some("/etc/hostname".into()),
            ..Default::default()
        };
        assert!(cert_only
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("--tls-key"));

        let missing = ConnectArgs {
            tls_ca: Some("/no/such/ca.pem".into()),
            ..Default::default()
        };
        let err = missing.resolve().unwrap_err().to_string();
        assert!(err.contains("/no/such/ca.pem"), "{err}");
    }
}
