//! A `nats-server` with JetStream, run as a child process with its data in a folder of ours.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A running `nats-server`; it is killed when this is dropped.
pub struct NatsServer {
    child: Child,
    port: u16,
    data_dir: PathBuf,
    /// Extra command-line arguments (e.g. `--user`/`--pass`), kept for restarts.
    extra: Vec<String>,
    /// The data folder when it is ours to remove ([`NatsServer::start_temporary`]); removed
    /// after the server is killed.
    _temporary: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// Starts `nats-server -js` on `port` (0 picks a free one) with JetStream data under
    /// `data_dir`, and waits until it accepts connections.
    pub fn start(port: u16, data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with_args(port, data_dir, Vec::new())
    }

    /// Starts `nats-server -js` on a free port with its data in a new temporary folder,
    /// removed when this is dropped: what a test or a benchmark wants.
    pub fn start_temporary() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating a temporary NATS data folder")?;
        let mut server = Self::start(0, dir.path())?;
        server._temporary = Some(dir);
        Ok(server)
    }

    /// Like [`NatsServer::start`], accepting only clients that log in as `user`/`password`.
    pub fn start_with_user(
        port: u16,
        data_dir: &Path,
        user: &str,
        password: &str,
    ) -> anyhow::Result<Self> {
        let extra = ["--user", user, "--pass", password].map(String::from);
        Self::start_with_args(port, data_dir, extra.to_vec())
    }

    /// Like [`NatsServer::start`], with more `nats-server` arguments (TLS, authorization…).
    pub fn start_with_args(port: u16, data_dir: &Path, extra: Vec<String>) -> anyhow::Result<Self> {
        // A free port picked here can be taken by another process before nats-server binds
        // it (tests start many servers and listeners at once): then try another.
        let attempts = if port == 0 { PORT_ATTEMPTS } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let port = if port == 0 { free_port()? } else { port };
            let mut server = Self {
                child: spawn(port, data_dir, &extra)?,
                port,
                data_dir: data_dir.to_path_buf(),
                extra: extra.clone(),
                _temporary: None,
            };
            match server.wait_ready(Duration::from_secs(10)) {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("nats-server did not start")))
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.data_dir.join("nats-server.log"))
                    .unwrap_or_default();
                bail!(
                    "nats-server exited at start ({status}); is port {} in use? Its log says:\n{}",
                    self.port,
                    log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
                );
            }
            if speaks_nats(self.port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "nats-server did not accept connections on port {} within {timeout:?}",
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (as a crash would) and starts it again on the same port and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.restart_after(Duration::ZERO)
    }

    /// As [`restart`](Self::restart), with the server away for `down` in between: an outage
    /// rather than a blip.
    pub fn restart_after(&mut self, down: Duration) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = spawn(self.port, &self.data_dir, &self.extra)?;
        self.wait_ready(Duration::from_secs(10))
    }
}

/// How many free ports `start` tries when it picks them.
const PORT_ATTEMPTS: usize = 3;

/// Whether what listens on `port` is a NATS server: it greets a new connection with `INFO`.
/// Something else may hold the port (another process took it first), and a bare connect
/// would take that for our server.
fn speaks_nats(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut greeting = [0u8; 4];
    stream.read_exact(&mut greeting).is_ok() && &greeting == b"INFO"
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(port: u16, data_dir: &Path, extra: &[String]) -> anyhow::Result<Child> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create NATS data folder {}", data_dir.display()))?;
    let log = std::fs::File::create(data_dir.join("nats-server.log"))
        .with_context(|| format!("cannot write the NATS log in {}", data_dir.display()))?;
    let program = program();
    Command::new(&program)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(data_dir.join("jetstream"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound && program == DEFAULT_PROGRAM {
                anyhow::anyhow!(
                    "nats-server is not installed. Install it with `sudo apt-get install nats-server` (or run scripts/setup.sh), or point trellis at an existing server with --nats URL"
                )
            } else {
                anyhow::anyhow!("cannot start {program}: {e}")
            }
        })
}

/// The nats-server found on `PATH`.
const DEFAULT_PROGRAM: &str = "nats-server";
/// Names another nats-server binary to run: the test suite runs once more against the current
/// release (scripts/current-nats.sh), besides the distribution's.
pub const PROGRAM_ENV: &str = "TRELLIS_NATS_SERVER";

fn program() -> String {
    std::env::var(PROGRAM_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PROGRAM.to_string())
}

/// A port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}
