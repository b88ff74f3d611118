//! A Kafka broker of the test's own (KRaft, one node, plaintext), which the test may kill,
//! freeze and restart without disturbing the other tests on the shared `./dev` broker.
//!
//! Runs the jars `./dev` fetched (`.dev/kafka/libs`; `KAFKA_LIBS` overrides) with the
//! machine's `java`. Its log directory survives restarts, as a real broker's disk would.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or killed, or frozen) throw-away broker on free loopback ports; killed and
/// removed on drop.
pub(crate) struct PrivateKafka {
    home: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateKafka {
    /// Formats a fresh log directory and starts the broker; returns once it accepts
    /// connections.
    pub(crate) fn start(label: &str) -> Self {
        let home = std::env::temp_dir().join(format!(
            "strikeflow-{label}-kafka-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(home.join("data")).expect("a directory for the broker");
        let (port, controller) = (free_port(), free_port());
        std::fs::write(
            home.join("server.properties"),
            format!(
                "process.roles=broker,controller\n\
                 node.id=1\n\
                 controller.quorum.voters=1@127.0.0.1:{controller}\n\
                 listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
                 inter.broker.listener.name=PLAINTEXT\n\
                 controller.listener.names=CONTROLLER\n\
                 log.dirs={}\n\
                 auto.create.topics.enable=false\n\
                 offsets.topic.replication.factor=1\n\
                 transaction.state.log.replication.factor=1\n\
                 transaction.state.log.min.isr=1\n\
                 share.coordinator.state.topic.replication.factor=1\n\
                 share.coordinator.state.topic.min.isr=1\n\
                 min.insync.replicas=1\n\
                 group.initial.rebalance.delay.ms=0\n",
                home.join("data").display()
            ),
        )
        .expect("writing server.properties");
        let status = java()
            .arg("kafka.tools.StorageTool")
            .args(["format", "-t", &cluster_id(), "-c"])
            .arg(home.join("server.properties"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("running kafka.tools.StorageTool (is java on PATH? ./dev up fetches the jars)");
        assert!(
            status.success(),
            "formatting the private broker's storage failed"
        );
        let mut kafka = Self {
            home,
            port,
            child: None,
        };
        kafka.restart();
        kafka
    }

    /// `host:port` of its client listener.
    pub(crate) fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker on its existing log directory and waits until it accepts
    /// connections (the stages' clients then find the controller on their own).
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("kafka.log"))
            .expect("a log file");
        let child = java()
            .arg("-Xmx512m")
            .arg("kafka.Kafka")
            .arg(self.home.join("server.properties"))
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn()
            .expect("starting the private broker");
        self.child = Some(child);
        // A restart after SIGKILL recovers every log first (the offsets and transaction
        // logs are 100 partitions), which takes a while on a loaded machine.
        let deadline = Instant::now() + Duration::from_secs(180);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.home.join("kafka.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "the private broker did not listen within 180 s; its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log = std::fs::read_to_string(self.home.join("kafka.log")).unwrap_or_default();
                panic!("the private broker exited with {status}; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: the JVM dies at once, as in a crash; what it acknowledged is in the page
    /// cache and survives, as it would on a host that stays up.
    pub(crate) fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the broker stops answering but its sockets stay open, so clients see a
    /// black hole (requests time out) instead of refused connections.
    pub(crate) fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: the frozen broker answers again.
    pub(crate) fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the broker is running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("sending a signal");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.thaw();
        }
        self.kill_9();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// `java` with the broker's class path.
fn java() -> Command {
    let libs = std::env::var("KAFKA_LIBS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".dev/kafka/libs"));
    let mut java = Command::new("java");
    java.arg("-cp").arg(format!("{}/*", libs.display()));
    java
}

/// A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (what
/// `kafka-storage random-uuid` prints), without starting a JVM for it; like Kafka's, never
/// starting with `-`, which the storage tool would read as an option.
fn cluster_id() -> String {
    loop {
        let id = random_uuid();
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn random_uuid() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes: [u8; 16] = rand::random();
    let mut bits = 0u32;
    let mut held = 0;
    let mut out = String::new();
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        held += 8;
        while held >= 6 {
            held -= 6;
            out.push(char::from(ALPHABET[((bits >> held) & 63) as usize]));
        }
    }
    if held > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - held)) & 63) as usize]));
    }
    out
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}
