//! A PostgreSQL cluster of the test's own, which the test may stop, start and reconfigure
//! without disturbing the other tests on the shared `./dev` cluster.
//!
//! Built from the same Debian server binaries `./dev` uses (`/usr/lib/postgresql/<v>/bin`,
//! the newest; `STRIKEFLOW_PG_BIN` overrides). initdb and postgres refuse to run as root, so
//! as root every server command runs as the `postgres` user (as `./dev` does).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running (or stopped) throw-away cluster on a free loopback port; removed on drop.
pub(crate) struct PrivatePostgres {
    bin: PathBuf,
    home: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// initdb (trust auth, user `strikeflow`) and start; `fsync = off` as in `./dev`.
    pub(crate) fn start(label: &str) -> Self {
        let bin = server_bin();
        let home = std::env::temp_dir().join(format!(
            "strikeflow-{label}-pg-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&home).expect("a directory for the cluster");
        if is_root() {
            run(Command::new("chown").arg("postgres:").arg(&home));
        }
        let port = free_port();
        let cluster = Self { bin, home, port };
        cluster.as_server(&[
            cluster.bin.join("initdb").as_os_str(),
            "-D".as_ref(),
            cluster.data().as_os_str(),
            "--auth=trust".as_ref(),
            "--username=strikeflow".as_ref(),
            "--encoding=UTF8".as_ref(),
            "--locale=C".as_ref(),
        ]);
        cluster.start_server(&[]);
        cluster
    }

    /// The URL of its `postgres` database (tests create their own databases in it).
    pub(crate) fn url(&self) -> String {
        format!("postgres://strikeflow@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl stop -m immediate`: the server crashes on purpose — every process exits at
    /// once, open transactions are lost, and the next start runs crash recovery (a commit
    /// whose record was flushed is kept, acknowledged or not).
    pub(crate) fn crash(&self) {
        self.stop_with("immediate");
    }

    /// `pg_ctl stop -m fast`: every session is terminated and open transactions roll back.
    pub(crate) fn stop(&self) {
        self.stop_with("fast");
    }

    fn stop_with(&self, mode: &str) {
        let pg_ctl = self.bin.join("pg_ctl");
        self.as_server(&[
            pg_ctl.as_os_str(),
            "-D".as_ref(),
            self.data().as_os_str(),
            "-m".as_ref(),
            mode.as_ref(),
            "-w".as_ref(),
            "stop".as_ref(),
        ]);
    }

    /// Starts the stopped server again, with `settings` (`name=value`) given on its command
    /// line: they override `postgresql.auto.conf`, e.g. to undo an `ALTER SYSTEM`.
    pub(crate) fn start_again(&self, settings: &[&str]) {
        self.start_server(settings);
    }

    fn start_server(&self, settings: &[&str]) {
        let mut options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=on",
            self.port,
            self.home.display()
        );
        for setting in settings {
            options.push_str(&format!(" -c {setting}"));
        }
        let pg_ctl = self.bin.join("pg_ctl");
        let log = self.home.join("postgres.log");
        self.as_server(&[
            pg_ctl.as_os_str(),
            "-D".as_ref(),
            self.data().as_os_str(),
            "-l".as_ref(),
            log.as_os_str(),
            "-w".as_ref(),
            "-o".as_ref(),
            options.as_ref(),
            "start".as_ref(),
        ]);
    }

    fn data(&self) -> PathBuf {
        self.home.join("data")
    }

    /// Runs a server command, as `postgres` when the test runs as root; panics with its
    /// output (and the server log) when it fails.
    fn as_server(&self, argv: &[&std::ffi::OsStr]) -> Output {
        let output = server_command(argv)
            .output()
            .expect("running a PostgreSQL server command");
        if !output.status.success() {
            let log = std::fs::read_to_string(self.home.join("postgres.log")).unwrap_or_default();
            panic!(
                "{argv:?} failed: {}\n{}\nserver log:\n{log}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        output
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data();
        let _ = server_command(&[
            pg_ctl.as_os_str(),
            "-D".as_ref(),
            data.as_os_str(),
            "-m".as_ref(),
            "immediate".as_ref(),
            "-w".as_ref(),
            "stop".as_ref(),
        ])
        .output();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// `argv` as a command, run as `postgres` when the test runs as root (initdb and postgres
/// refuse root), from `/` (postgres may not be allowed into the test's working directory).
fn server_command(argv: &[&std::ffi::OsStr]) -> Command {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]);
        c.args(argv);
        c
    } else {
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        c
    };
    command.current_dir("/");
    command
}

/// The newest server binaries, as `./dev` finds them.
fn server_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("STRIKEFLOW_PG_BIN") {
        return PathBuf::from(dir);
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (./dev up installs \
             them; or set STRIKEFLOW_PG_BIN)"
        ),
    }
}

fn is_root() -> bool {
    // `id -u` rather than libc::geteuid: the tests stay free of unsafe code.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn run(command: &mut Command) {
    let status = command.status().expect("running a command");
    assert!(status.success(), "{command:?} failed");
}
