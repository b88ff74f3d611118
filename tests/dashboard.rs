//! The dashboard in a real browser, on live simulated data: the simulator, processors, sink,
//! push and the API (serving the page at `/`) run in this process against a private
//! database and private topics; `tests/contract/dashboard_test.py` drives Debian's headless
//! Chromium through Playwright for Python: sign-in, the chain filling and changing in place,
//! candles, moneyness, an indicator, REST history, reconnect-and-resume, and a push-only
//! token. It saves the screenshot `docs/dashboard.png` (README.md shows it).
//!
//! Needs the services of `./dev up`, `STRIKEFLOW_PYTHON` pointing at a Python with the
//! packages of `tests/contract/requirements.txt` (Playwright among them), and `chromium` on
//! PATH or in `STRIKEFLOW_CHROMIUM`; `./dev test` provides all three.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Sandbox;
use strikeflow_api::{mint_token, ApiConfig, ApiServer, ApiSettings, TokenRequest};
use strikeflow_ingest::SimulatorConfig;
use strikeflow_push::PushServer;
use tokio_util::sync::CancellationToken;

/// Ticks per second of wall time: the single-chain market ticks every 100 ms of event
/// time (600 ticks an event minute), so a one-minute candle closes every ~0.75 s and the
/// chain changes every ~12 ms; candles, indicators (RSI needs 15 bars) and moneyness
/// minutes appear within seconds, and the debug-built processors keep up on a busy
/// 2-core machine.
const RATE: f64 = 800.0;
/// More than the run needs (the simulation is cancelled when the browser is done).
const MAX_TICKS: u64 = 200_000;
/// The browser's whole script, sign-in to screenshot, push-only token included.
const BROWSER_DEADLINE: Duration = Duration::from_secs(100);

fn python() -> String {
    std::env::var("STRIKEFLOW_PYTHON").unwrap_or_else(|_| {
        panic!(
            "STRIKEFLOW_PYTHON is not set: this test needs a Python with Playwright \
             (tests/contract/requirements.txt). Run it through `./dev test`, which builds that \
             venv, installs Chromium and exports STRIKEFLOW_PYTHON."
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_live_chain_in_chromium() {
    let started = Instant::now();
    let mut sandbox = Sandbox::new("dash").await;
    let config = &mut sandbox.config;
    config.simulate.rate = RATE;
    config.simulate.max_ticks = MAX_TICKS;
    // One weekly chain, as the end-to-end tests pin it, but with ±7 strikes: a screen's
    // worth of rows (the market's tick rate is the same, so event time runs as fast).
    config.simulate.market = SimulatorConfig::single_chain();
    config.simulate.market.strikes_each_side = 7;
    config.processor.group_id = format!("{}-processors", sandbox.name);
    config.push.listen = "127.0.0.1:0".parse().unwrap();
    let config = sandbox.config.clone();
    let shutdown = CancellationToken::new();

    let push = PushServer::bind(config.push()).await.expect("binding push");
    let push_addr = push.local_addr();
    let api = ApiServer::bind(ApiConfig {
        database_url: config.database.url.clone(),
        redis_url: config.redis.url.clone(),
        auth: config.auth.clone(),
        settings: ApiSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ApiSettings::default()
        },
    })
    .await
    .expect("binding the API");
    let api_addr = api.local_addr();
    let push_task = tokio::spawn(push.serve(shutdown.clone()));
    let api_task = tokio::spawn(api.serve(shutdown.clone()));
    let processor = tokio::spawn(strikeflow_processors::run(
        config.processor(),
        shutdown.clone(),
    ));
    let sink = tokio::spawn(strikeflow_sink::run(config.sink(), shutdown.clone()));
    let simulation = tokio::spawn(strikeflow_ingest::run_simulation(
        config.simulate(),
        shutdown.clone(),
    ));

    // One token for push and the API (what a deployment's identity provider would issue a
    // trader), and one push alone accepts.
    let both = mint_token(
        &config.auth,
        &TokenRequest {
            sub: "dashboard".into(),
            ttl: Duration::from_secs(600),
            audiences: vec![
                config.auth.audience.clone(),
                ApiSettings::default().audience,
            ],
            scopes: vec![ApiSettings::default().scope],
            channels: vec!["*".into()],
        },
    )
    .expect("minting a token for push and the API");
    let push_only = strikeflow_push::auth::mint(
        &config.auth.jwt_secret,
        "dashboard-push-only",
        Duration::from_secs(600),
        vec![],
    )
    .expect("minting a push token");

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/contract/dashboard_test.py"
    );
    let screenshot = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/dashboard.png");
    // std::process (the root package builds tokio without its process feature), polled so
    // the pipeline keeps running on the runtime meanwhile.
    let mut child = std::process::Command::new(python())
        .arg(script)
        .arg("--page")
        .arg(format!("http://{api_addr}/"))
        .arg("--ws")
        .arg(format!("ws://{push_addr}/ws"))
        .arg("--screenshot")
        .arg(screenshot)
        .arg("--failure-screenshot")
        .arg(concat!(
            env!("CARGO_TARGET_TMPDIR"),
            "/dashboard-failure.png"
        ))
        .env("STRIKEFLOW_DASHBOARD_TOKEN", &both)
        .env("STRIKEFLOW_DASHBOARD_PUSH_TOKEN", &push_only)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting the browser script");
    let deadline = Instant::now() + BROWSER_DEADLINE;
    while child
        .try_wait()
        .expect("polling the browser script")
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser script did not finish within {BROWSER_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = child.wait_with_output().expect("the browser script ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the dashboard failed in Chromium ({}); its log is above. stdout: {stdout}",
        output.status
    );
    let report: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .last()
            .expect("the script printed its report"),
    )
    .expect("a JSON report");
    eprintln!("dashboard: {report}");
    assert!(report["chain"]["rows"].as_u64().unwrap() >= 3, "{report}");
    assert!(report["candles"]["bars"].as_u64().unwrap() >= 2, "{report}");
    assert!(std::path::Path::new(screenshot).exists());

    // The stages were live throughout (none stopped early), and all stop cleanly.
    assert!(
        !simulation.is_finished(),
        "the simulated session ended before the browser was done"
    );
    shutdown.cancel();
    simulation.await.unwrap().expect("simulation");
    processor.await.unwrap().expect("processor stops cleanly");
    sink.await.unwrap().expect("sink stops cleanly");
    push_task.await.unwrap().expect("push stops cleanly");
    api_task.await.unwrap().expect("the API stops cleanly");
    eprintln!("the dashboard test took {:.1?}", started.elapsed());
}
