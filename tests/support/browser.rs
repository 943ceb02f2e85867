//! Headless Chromium for the browser tests: loads a page, lets its scripts run for a bounded
//! (virtual) time, and returns the DOM as it then is and what the page logged to the console;
//! keeps a screenshot as a test artefact. Missing Chromium fails the test (scripts/install-chromium).
//! Also the inspection of a page's plots: each `<figure id=…>` and the SVG marks in it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// What Chromium saw of a page.
pub struct Page {
    /// The DOM after the scripts ran, serialised.
    pub dom: String,
    /// Every console message (`console.log`, `.warn`, `.error`) and every uncaught error, as
    /// Chromium logs them (`"Uncaught ReferenceError: …", source: URL (LINE)`). Chromium's log
    /// does not give a message's level: the pages under test log nothing, so each one counts.
    pub console: Vec<String>,
    /// The screenshot, under `<target>/browser-artifacts/`.
    pub screenshot: PathBuf,
}

/// The longest a Chromium run may take (real time) before the test fails.
const BOUND: Duration = Duration::from_secs(60);

/// Loads `url`, runs its scripts for `budget` of virtual time, and keeps a screenshot named
/// `name` (1280 pixels wide, `height` high).
pub async fn load(url: &str, name: &str, budget: Duration, height: u32) -> Page {
    let binary = chromium();
    let budget = format!("--virtual-time-budget={}", budget.as_millis());
    let (stdout, stderr) = run(&binary, &[&budget, "--dump-dom", url]).await;
    let screenshot = artifacts().join(format!("{name}.png"));
    let shot = format!("--screenshot={}", screenshot.display());
    let size = format!("--window-size=1280,{height}");
    run(&binary, &[&budget, &shot, &size, url]).await;
    assert!(screenshot.exists(), "chromium wrote no screenshot of {url} to {}", screenshot.display());
    Page { dom: stdout, console: console_messages(&stderr), screenshot }
}

async fn run(binary: &str, args: &[&str]) -> (String, String) {
    let profile = std::env::temp_dir().join(format!("forklane-chromium-{}", rand::random::<u64>()));
    let child = tokio::process::Command::new(binary)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{binary} does not start ({e}); run scripts/install-chromium"));
    let out = tokio::time::timeout(BOUND, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("chromium {args:?} still running after {BOUND:?}"))
        .expect("chromium's output");
    let _ = std::fs::remove_dir_all(profile);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium {args:?} failed ({}):\n{stderr}", out.status);
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// The console lines of Chromium's log: `[…:INFO:CONSOLE:LINE] "message", source: URL (LINE)`.
fn console_messages(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| {
            l.split_once(":CONSOLE:").and_then(|(_, rest)| rest.split_once("] ")).map(|(_, m)| m.to_string())
        })
        .collect()
}

/// Chromium from PATH (the Debian package). Missing, it fails the test: nothing is skipped.
pub fn chromium() -> String {
    match std::process::Command::new("chromium").arg("--version").output() {
        Ok(o) if o.status.success() => "chromium".into(),
        other => panic!(
            "chromium is required on PATH for the browser tests ({:?}); run scripts/install-chromium",
            other.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        ),
    }
}

/// `$CARGO_TARGET_DIR/browser-artifacts` (else `target/browser-artifacts`), created.
pub fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("browser-artifacts");
    std::fs::create_dir_all(&dir).expect("the artefact directory");
    dir
}

/// The element `<figure id="ID" …>…</figure>` of `html`; panics when absent.
pub fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!("<figure id=\"{id}\"")).unwrap_or_else(|| panic!("no figure {id:?} in the page"));
    let end = html[start..].find("</figure>").expect("the figure ends") + start;
    &html[start..end]
}

/// The ids of the figures whose class is `effect`, in page order.
pub fn effect_figures(html: &str) -> Vec<String> {
    html.match_indices("<figure id=\"")
        .map(|(i, m)| &html[i + m.len()..])
        .filter_map(|rest| {
            let (id, rest) = rest.split_once('"')?;
            rest.split('>').next()?.contains("class=\"effect\"").then(|| id.to_string())
        })
        .collect()
}

/// How many `<tag` elements `svg` holds (`circle`, `polyline`, `rect`, `text`, …).
pub fn count(svg: &str, tag: &str) -> usize {
    svg.matches(&format!("<{tag} ")).count() + svg.matches(&format!("<{tag}>")).count()
}
