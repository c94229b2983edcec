//! The web dashboard end to end: the real `keel serve` binary in manual
//! automation (config file and data directory in a tempdir, port chosen by
//! the kernel), Debian's headless Chromium driven through chromedriver
//! (WebDriver, on a loopback port) with fantoccini. The page is opened with
//! the generated token in the URL fragment; the test sees the heat map and
//! the plan list, clicks Apply on the recommended plan and waits until the
//! page shows it done and the imbalance plot falls; it also checks the
//! token form (a wrong token is refused), maintenance from the heat map and
//! a host's history. A screenshot goes to `<target>/e2e/dashboard.png`.
//! Skips loudly without chromium or chromedriver. Every wait is bounded.

#![cfg(unix)]

use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Chromium's flags: headless, and nothing that reaches for the network
/// (the machine's closed network refuses it, and a test must not).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1500",
];

/// Hosts of the simulated cluster (the config's default).
const HOSTS: usize = 10;

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A child process killed when dropped, with its output lines collected.
struct Process {
    name: &'static str,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `command`, collects stdout and stderr lines on threads, and
    /// waits (bounded) for a line where `ready` finds something.
    fn start<T>(
        name: &'static str,
        mut command: Command,
        ready: impl Fn(&str) -> Option<T>,
    ) -> (Self, T) {
        let mut child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [out, err] {
            let (lines, tx) = (lines.clone(), tx.clone());
            // Keeps draining after readiness: a full pipe would block the child.
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line.clone());
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let mut process = Self { name, child, lines };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(found) = ready(&line) {
                        return (process, found);
                    }
                }
                Err(_) => {
                    let status = process.child.try_wait().ok().flatten();
                    panic!(
                        "{name} did not get ready within 30 s (exit: {status:?}); output:\n{}",
                        process.output()
                    );
                }
            }
        }
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Each child leads its own process group (see `start`): the group
        // goes, so a Chromium that chromedriver started does not outlive a
        // failed test.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} output ----\n{}", self.name, self.output());
        }
    }
}

/// `<target>/e2e`: beside the profile directory holding the binary.
fn artifact_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_keel"));
    let target = bin
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    target.join("e2e")
}

fn serve(dir: &Path) -> (Process, SocketAddr, String) {
    // The trace stands still (one sample an hour of wall time): the
    // recommended plan stays the same while the test clicks it.
    let config = dir.join("keel.toml");
    std::fs::write(
        &config,
        "automation = \"manual\"\ninterval_seconds = 1.0\n\n[sim]\nwall_seconds_per_sample = 3600.0\n",
    )
    .unwrap();
    let data = dir.join("data");
    let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
    command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"]);
    let (process, addr) = Process::start("keel serve", command, |line| {
        let rest = line.split("dashboard=http://").nth(1)?;
        rest.split('/').next()?.parse::<SocketAddr>().ok()
    });
    let token = std::fs::read_to_string(data.join("token")).expect("the generated token file");
    (process, addr, token.trim().to_string())
}

fn chromedriver(driver: &Path, log_dir: &Path) -> (Process, u16) {
    let mut command = Command::new(driver);
    command.arg("--port=0").arg(format!(
        "--log-path={}",
        log_dir.join("chromedriver.log").display()
    ));
    Process::start("chromedriver", command, |line| {
        line.split("started successfully on port ")
            .nth(1)?
            .trim_end_matches('.')
            .parse()
            .ok()
    })
}

async fn connect(port: u16, chromium: &Path, profile: &Path) -> Client {
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": chromium, "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with headless Chromium")
}

/// Polls `probe` every 200 ms until it returns `Some`, for at most `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn count(client: &Client, css: &str) -> usize {
    client
        .find_all(Locator::Css(css))
        .await
        .map_or(0, |v| v.len())
}

async fn plan_state(client: &Client, id: &str) -> Option<String> {
    let css = format!("article[data-plan-id=\"{id}\"]");
    client
        .find(Locator::Css(&css))
        .await
        .ok()?
        .attr("data-state")
        .await
        .ok()?
}

/// The latest point of the imbalance plot (NaN before it has one).
async fn latest_imbalance(client: &Client) -> f64 {
    let Ok(plot) = client.find(Locator::Id("imbalance-plot")).await else {
        return f64::NAN;
    };
    let latest = plot.attr("data-latest").await.ok().flatten();
    latest.and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// Clicks Apply on the recommended plan and returns its id once the page
/// shows it done. A plan superseded between seeing it and clicking it (409
/// on the page) is retried with the next recommendation.
async fn apply_a_plan(client: &Client) -> String {
    for _attempt in 0..5 {
        let (button, id) = wait_for("an Apply button", Duration::from_secs(30), || async {
            let button = client.find(Locator::Css("button.apply")).await.ok()?;
            let id = button.attr("data-plan").await.ok()??;
            Some((button, id))
        })
        .await;
        if button.click().await.is_err() {
            continue; // re-rendered under the pointer: look again
        }
        let state = wait_for(
            "the plan to leave applying",
            Duration::from_secs(30),
            || {
                let id = id.clone();
                async move {
                    let state = plan_state(client, &id).await?;
                    (state != "recommended" && state != "applying").then_some(state)
                }
            },
        )
        .await;
        match state.as_str() {
            "done" => return id,
            "rejected" => continue,
            other => panic!("plan {id} ended {other}"),
        }
    }
    panic!("no recommended plan could be applied in 5 attempts");
}

#[test]
fn the_dashboard_applies_a_recommended_plan_in_headless_chromium() {
    let (Some(chromium), Some(driver)) = (
        on_path(&["chromium", "chromium-browser"]),
        on_path(&["chromedriver"]),
    ) else {
        eprintln!(
            "SKIPPED: dashboard end-to-end test because chromium and/or chromedriver are not on \
             PATH (Debian: apt-get install chromium chromium-driver; .ci/run installs them)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr, token) = serve(dir.path());
    let (_driver, port) = chromedriver(&driver, dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let shot = runtime.block_on(async {
        let client = connect(port, &chromium, &dir.path().join("profile")).await;
        let result = drive(&client, addr, &token).await;
        let _ = client.close().await;
        result
    });
    let out = artifact_dir();
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join("dashboard.png");
    std::fs::write(&path, &shot).unwrap();
    println!("dashboard screenshot: {}", path.display());
    assert!(
        daemon.output().contains("applying plan"),
        "the daemon logged no apply"
    );
}

async fn displayed(client: &Client, id: &str) -> bool {
    match client.find(Locator::Id(id)).await {
        Ok(el) => el.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

async fn text_of(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// Without a token the page shows only the form; a wrong token pasted
/// there is refused by the API and the form says so.
async fn sign_in_refused(client: &Client, addr: SocketAddr) {
    client
        .goto(&format!("http://{addr}/"))
        .await
        .expect("the dashboard page");
    wait_for("the token form", Duration::from_secs(30), || async {
        displayed(client, "login").await.then_some(())
    })
    .await;
    assert!(
        !displayed(client, "main").await,
        "data panels shown without a token"
    );
    let input = client.find(Locator::Id("token-input")).await.unwrap();
    input.send_keys("not-the-token-0123456789").await.unwrap();
    let submit = client
        .find(Locator::Css("#login-form button[type=submit]"))
        .await
        .unwrap();
    submit.click().await.unwrap();
    wait_for("the refusal", Duration::from_secs(30), || async {
        let error = text_of(client, "#login-error").await?;
        error.contains("refused").then_some(())
    })
    .await;
}

/// Maintenance from the heat map: enter (confirming the dialog), see the
/// host emptied, leave.
async fn maintenance_round_trip(client: &Client, host: &str) {
    let row = format!("#heatmap tr[data-host=\"{host}\"]");
    let state_css = format!("{row} td.host-state");
    let button_css = format!("{row} td:last-child button");
    // The table is redrawn at each refresh: find and click in one go.
    wait_for(
        "the maintenance button",
        Duration::from_secs(30),
        || async {
            let button = client.find(Locator::Css(&button_css)).await.ok()?;
            button.click().await.ok()
        },
    )
    .await;
    let question = wait_for("the confirmation", Duration::from_secs(10), || async {
        client.get_alert_text().await.ok()
    })
    .await;
    assert!(question.contains(host), "{question}");
    client.accept_alert().await.unwrap();
    wait_for(
        "the host to be safe to service",
        Duration::from_secs(30),
        || async { (text_of(client, &state_css).await? == "safe to service").then_some(()) },
    )
    .await;
    let vms = text_of(client, &format!("{row} td.num")).await;
    assert_eq!(vms.as_deref(), Some("0"), "{host} still holds VMs");
    wait_for("the leave button", Duration::from_secs(30), || async {
        let button = client.find(Locator::Css(&button_css)).await.ok()?;
        if button.text().await.ok()? != "Leave maintenance" {
            return None;
        }
        button.click().await.ok()
    })
    .await;
    wait_for(
        "the host back in service",
        Duration::from_secs(30),
        || async { (text_of(client, &state_css).await? == "in service").then_some(()) },
    )
    .await;
}

/// The scenario; returns the screenshot (PNG) taken at the end.
async fn drive(client: &Client, addr: SocketAddr, token: &str) -> Vec<u8> {
    sign_in_refused(client, addr).await;
    client
        .goto(&format!("http://{addr}/#token={token}"))
        .await
        .expect("the dashboard page");
    // The token left the address bar at once.
    let url = client.current_url().await.unwrap();
    assert_eq!(url.fragment(), None, "{url}");

    wait_for("the heat map's rows", Duration::from_secs(30), || async {
        (count(client, "#heatmap tbody tr").await == HOSTS).then_some(())
    })
    .await;
    let cells = count(client, "#heatmap tbody td.heat").await;
    assert_eq!(cells, HOSTS * 4, "a coloured cell per host and resource");
    wait_for("the plan list", Duration::from_secs(30), || async {
        (count(client, "#plans article.plan").await > 0).then_some(())
    })
    .await;
    wait_for("the settings", Duration::from_secs(30), || async {
        let select = client.find(Locator::Id("automation-select")).await.ok()?;
        let value = select.prop("value").await.ok()??;
        (select.is_displayed().await.ok()? && value == "manual").then_some(())
    })
    .await;

    let before = wait_for("the imbalance plot", Duration::from_secs(30), || async {
        let v = latest_imbalance(client).await;
        v.is_finite().then_some(v)
    })
    .await;
    let id = apply_a_plan(client).await;
    println!("plan {id} applied from the page and shown done");
    // The imbalance plot shows the fall once the loop has observed it.
    let after = wait_for(
        "the imbalance plot to fall",
        Duration::from_secs(30),
        || async {
            let now = latest_imbalance(client).await;
            (now < before * 0.8).then_some(now)
        },
    )
    .await;
    println!("imbalance plot: {before:.3} -> {after:.3}");
    // The migrations table lists what the plan moved.
    wait_for("the migrations", Duration::from_secs(30), || async {
        (count(client, "#migrations-body tr[data-result=\"ok\"]").await > 0).then_some(())
    })
    .await;
    maintenance_round_trip(client, "host-09").await;
    println!("host-09 entered maintenance from the page, was emptied, left it");
    // A click on a host's name shows its load history.
    let host = client
        .find(Locator::Css(
            "#heatmap tr[data-host=\"host-03\"] button.link",
        ))
        .await
        .expect("host-03's name in the heat map");
    host.click().await.expect("clicking host-03");
    wait_for("host-03's history", Duration::from_secs(30), || async {
        let note = client.find(Locator::Id("history-note")).await.ok()?;
        let plots = count(client, "#history-plots svg.plot").await;
        (note.text().await.ok()?.contains("host-03") && plots == 4).then_some(())
    })
    .await;
    // Automation changed from the page: the daemon's settings follow.
    let select = client.find(Locator::Id("automation-select")).await.unwrap();
    select.select_by_value("full").await.unwrap();
    wait_for("the settings change", Duration::from_secs(30), || async {
        let said = text_of(client, "#announce").await?;
        said.contains("automation full").then_some(())
    })
    .await;
    let body = client.find(Locator::Css("body")).await.unwrap();
    let errors = body.attr("data-errors").await.unwrap();
    assert_eq!(errors, None, "{:?}", text_of(client, "#announce").await);
    let status = client.find(Locator::Id("status")).await.unwrap();
    assert_eq!(
        status.attr("data-kind").await.unwrap().as_deref(),
        Some("ok")
    );
    let shot = client.screenshot().await.expect("a screenshot");
    csp_is_enforced(client).await;
    shot
}

/// The browser enforces the page's Content-Security-Policy: an image from
/// a `data:` URL (no network involved) is blocked and the page counts it.
async fn csp_is_enforced(client: &Client) {
    let probe = "const img = new Image();                  img.src = 'data:image/gif;base64,R0lGODlhAQABAAAAACw=';                  document.body.append(img);";
    client
        .execute(probe, vec![])
        .await
        .expect("the probe script");
    wait_for(
        "the policy to block the probe",
        Duration::from_secs(10),
        || async {
            let body = client.find(Locator::Css("body")).await.ok()?;
            (body.attr("data-errors").await.ok()?? == "1").then_some(())
        },
    )
    .await;
}
