//! The web console in a real browser: headless Chromium driven through `chromedriver` (Debian
//! packages `chromium` and `chromium-driver`) against the real server, started in-process on a
//! fresh SQLite file with the system clock (the browser's clock is real too).
//!
//! Every step leaves a screenshot in `target/e2e-screenshots/` to look at: the console must look
//! like a product, not a form dump. When chromedriver is missing the tests fail, telling what to
//! install; they never pass silently.

use std::future::Future;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hmac::{Hmac, Mac};
use keyward_core::crypto::MasterKey;
use keyward_runtime::{Clock, SystemClock};
use keyward_server::config::Config;
use keyward_server::{Deps, Keyward};
use keyward_store::Store;
use keyward_store_sqlite::SqliteStore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Where the screenshots go: `<workspace>/target/e2e-screenshots/`.
const SCREENSHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/e2e-screenshots");
/// The password of every member.
const PASSWORD: &str = "correct horse battery staple";
const OWNER: &str = "olivia.owner@acme.test";
const READER: &str = "rick.reader@acme.test";
/// The registered sender numbers and channels of the seeded organization.
const NUMBERS: [&str; 2] = ["+14155550100", "+14155550101"];
const CHANNELS: [(&str, &str); 3] =
    [("marketing", "Marketing"), ("alerts", "Alerts"), ("test-devices", "Test devices")];
/// How long any one element may take to appear.
const WAIT: Duration = Duration::from_secs(20);
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROME_ARGS: [&str; 10] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    "--lang=en-US",
];

/// At most two browsers at a time: the tests run in parallel on small machines.
static BROWSERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

// ---- The server ------------------------------------------------------------------------------

/// The real server on 127.0.0.1:0 with one organization: two sender numbers, three channels,
/// an owner and a read-only member.
struct Server {
    base_url: String,
    http: reqwest::Client,
    operator_token: String,
    org: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path().join("keyward.db").to_str().expect("utf-8 path")).expect("open store");
        store.migrate().await.expect("migrate");
        let master_key = MasterKey::generate(&mut rand::rngs::OsRng);
        let operator_token = format!("kwop_test_{}", keyward_core::base62::random_string(&mut rand::rngs::OsRng, 32));
        let keyward = Keyward::new(Deps {
            operator_token_hash: master_key.pepper().hash(&operator_token),
            config: Config::default(),
            store: Arc::new(store),
            master_key,
            clock: Arc::new(SystemClock),
            shared: None,
            node_id: "test".to_owned(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            keyward_server::serve(listener, keyward, async move {
                let _ = stopped.await;
            })
            .await
            .expect("server");
        });
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let mut ready = false;
        for _ in 0..200 {
            if http.get(format!("{base_url}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ready, "the server did not become ready");
        let mut server =
            Self { base_url, http, operator_token, org: String::new(), shutdown: Some(shutdown), _dir: dir };
        let org = server.operator_post("/v1/orgs", &json!({ "name": "Acme Corp" })).await["id"]
            .as_str()
            .expect("org id")
            .to_owned();
        server.org.clone_from(&org);
        for number in NUMBERS {
            server.operator_post(&format!("/v1/orgs/{org}/phone-numbers"), &json!({ "number": number })).await;
        }
        for (slug, name) in CHANNELS {
            server.operator_post(&format!("/v1/orgs/{org}/channels"), &json!({ "slug": slug, "name": name })).await;
        }
        for (email, role) in [(OWNER, "owner"), (READER, "readonly")] {
            server
                .operator_post(
                    &format!("/v1/orgs/{org}/members"),
                    &json!({ "email": email, "password": PASSWORD, "role": role }),
                )
                .await;
        }
        server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A JSON call with the operator token; any status is returned with the body.
    async fn operator(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(&self.operator_token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A POST with the operator token that must succeed.
    async fn operator_post(&self, path: &str, body: &Value) -> Value {
        let (status, answer) = self.operator(reqwest::Method::POST, path, Some(body)).await;
        assert!((200..300).contains(&status), "POST {path} answered {status}: {answer:#}");
        answer
    }

    /// `POST /v1/verify`: the HTTP status is always 200; returns the decision.
    async fn verify(&self, body: &Value) -> Value {
        let (status, decision) = self.operator(reqwest::Method::POST, "/v1/verify", Some(body)).await;
        assert_eq!(status, 200, "{decision:#}");
        decision
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The real time, the server's too.
fn now() -> OffsetDateTime {
    SystemClock.now()
}

/// SPEC §5: `hex(HMAC-SHA256(secret, timestamp \n METHOD \n path_and_query \n hex(sha256(body))))`,
/// written out here as an integrator would.
fn signed_request(signing_secret: &str, method: &str, path: &str, body: &[u8]) -> Value {
    let timestamp = now().unix_timestamp().to_string();
    let body_sha256 = hex::encode(Sha256::digest(body));
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}\n{method}\n{path}\n{body_sha256}").as_bytes());
    json!({
        "method": method,
        "path": path,
        "timestamp": timestamp,
        "signature": hex::encode(mac.finalize().into_bytes()),
        "body_sha256": body_sha256,
    })
}

// ---- The browser -----------------------------------------------------------------------------

/// `chromedriver --port=N` in its own process group; the whole group (chromedriver and the
/// browsers it started) is killed on drop.
struct ChromeDriver {
    child: Child,
    url: String,
}

fn chromedriver_path() -> PathBuf {
    const INSTALL: &str = "these end-to-end tests need headless Chromium: install the Debian packages \
                           `chromium chromium-driver` (apt-get install chromium chromium-driver)";
    let found = match std::env::var_os("CHROMEDRIVER") {
        Some(path) => Some(PathBuf::from(path)).filter(|path| path.is_file()),
        None => std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .map(|dir| dir.join("chromedriver"))
            .chain([PathBuf::from("/usr/bin/chromedriver")])
            .find(|path| path.is_file()),
    };
    let Some(path) = found else { panic!("chromedriver was not found; {INSTALL}") };
    assert!(Path::new(CHROMIUM).is_file(), "{CHROMIUM} was not found; {INSTALL}");
    path
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl ChromeDriver {
    async fn start() -> Self {
        use std::os::unix::process::CommandExt;
        let path = chromedriver_path();
        let http = reqwest::Client::new();
        for _attempt in 0..3 {
            let port = free_port();
            let mut child = Command::new(&path)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("could not start {}: {e}", path.display()));
            let url = format!("http://127.0.0.1:{port}");
            for _ in 0..200 {
                if child.try_wait().expect("chromedriver status").is_some() {
                    break; // Lost the port to someone else: try another.
                }
                let status = http.get(format!("{url}/status")).send().await;
                if let Ok(response) = status {
                    let body: Value = response.json().await.unwrap_or_default();
                    if body["value"]["ready"] == true {
                        return Self { child, url };
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            kill_group(&mut child);
        }
        panic!("chromedriver did not start ({})", path.display());
    }

    /// A new browser session: Chromium with [`CHROME_ARGS`] and `extra_args`.
    async fn session(&self, extra_args: &[&str]) -> Client {
        let args: Vec<&str> = CHROME_ARGS.iter().chain(extra_args).copied().collect();
        let capabilities: Capabilities = serde_json::from_value(json!({
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        }))
        .expect("capabilities");
        ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("could not start Chromium through chromedriver: {e}"))
    }
}

fn kill_group(child: &mut Child) {
    // The group id is the child's own pid (`process_group(0)`).
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// What a browser test gets: its browser, and the driver to open more sessions with.
struct Browser {
    client: Client,
    driver: Arc<ChromeDriver>,
}

/// Runs `body` with a fresh browser; on failure a `FAILED-<test>.png` screenshot is saved.
/// The session is closed and chromedriver killed whatever happens.
async fn with_browser<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Browser) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let _permit = BROWSERS.acquire().await.expect("semaphore");
    let driver = Arc::new(ChromeDriver::start().await);
    let client = driver.session(&[]).await;
    let outcome = tokio::spawn(body(Browser { client: client.clone(), driver: driver.clone() })).await;
    if outcome.is_err() {
        if let Ok(png) = client.screenshot().await {
            save_png(&format!("FAILED-{test}"), &png);
        }
    }
    let _ = client.close().await;
    drop(driver);
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

fn save_png(name: &str, png: &[u8]) {
    std::fs::create_dir_all(SCREENSHOTS).expect("screenshot dir");
    std::fs::write(Path::new(SCREENSHOTS).join(format!("{name}.png")), png).expect("write screenshot");
}

/// Saves what the browser shows now as `target/e2e-screenshots/<name>.png`.
async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
    save_png(name, &png);
}

/// Waits for the first element matching `css`.
async fn find(c: &Client, css: &str) -> Element {
    c.wait().at_most(WAIT).for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("waiting for `{css}`: {e}"))
}

async fn find_all(c: &Client, css: &str) -> Vec<Element> {
    c.find_all(Locator::Css(css)).await.unwrap_or_else(|e| panic!("finding `{css}`: {e}"))
}

async fn absent(c: &Client, css: &str) -> bool {
    find_all(c, css).await.is_empty()
}

async fn text(c: &Client, css: &str) -> String {
    find(c, css).await.text().await.unwrap_or_else(|e| panic!("text of `{css}`: {e}"))
}

async fn click(c: &Client, css: &str) {
    find(c, css).await.click().await.unwrap_or_else(|e| panic!("clicking `{css}`: {e}"));
}

/// Clears a field and types `value` into it.
async fn fill(c: &Client, css: &str, value: &str) {
    let field = find(c, css).await;
    field.clear().await.unwrap_or_else(|e| panic!("clearing `{css}`: {e}"));
    field.send_keys(value).await.unwrap_or_else(|e| panic!("typing into `{css}`: {e}"));
}

async fn value(c: &Client, css: &str) -> String {
    find(c, css).await.prop("value").await.expect("value").unwrap_or_default()
}

async fn is_checked(c: &Client, css: &str) -> bool {
    find(c, css).await.is_selected().await.expect("is_selected")
}

async fn is_enabled(c: &Client, css: &str) -> bool {
    find(c, css).await.is_enabled().await.expect("is_enabled")
}

async fn script(c: &Client, js: &str, args: Vec<Value>) -> Value {
    c.execute(js, args).await.unwrap_or_else(|e| panic!("script failed: {e}\n{js}"))
}

/// Sets the `datetime-local` Expiry field to the browser's local time `seconds` from now (to the
/// minute) as a date picker would, and returns what it holds. Typing into the segmented control
/// depends on the locale; setting the value and firing its events does not.
async fn set_expiry_in(c: &Client, seconds: i64) -> String {
    let set = script(
        c,
        "const when = new Date(Date.now() + arguments[0] * 1000);
         const pad = (n) => String(n).padStart(2, '0');
         const text = `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())}` +
           `T${pad(when.getHours())}:${pad(when.getMinutes())}`;
         const field = document.getElementById('expiry');
         field.value = text;
         field.dispatchEvent(new Event('input', { bubbles: true }));
         field.dispatchEvent(new Event('change', { bubbles: true }));
         return field.value;",
        vec![json!(seconds)],
    )
    .await;
    let set = set.as_str().expect("expiry value").to_owned();
    assert!(!set.is_empty(), "the Expiry field refused the value");
    set
}

/// Scrolls an element into the middle of its scroll container (for the screenshots).
async fn scroll_to(c: &Client, css: &str) {
    script(c, "document.querySelector(arguments[0]).scrollIntoView({ block: 'center' });", vec![json!(css)]).await;
}

/// Logs in through the login form and waits for the page it leads to.
async fn log_in(c: &Client, server: &Server, email: &str, password: &str) {
    c.goto(&server.url("/login")).await.expect("open /login");
    fill(c, "#email", email).await;
    fill(c, "#password", password).await;
    click(c, "form button[type=submit]").await;
}

/// The computed `background-color` of an element.
async fn background(c: &Client, css: &str) -> String {
    find(c, css).await.css_value("background-color").await.expect("css value")
}

// ---- 1. The main story -----------------------------------------------------------------------

/// The key of the main story.
const KEY_NAME: &str = "CRM Sync (production)";

/// What the create dialog showed once.
struct Created {
    secret: String,
    signing_secret: String,
    /// The Expiry field as the browser held it (local time).
    expiry_field: String,
    /// Just before Create was clicked.
    at: OffsetDateTime,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_creates_uses_and_revokes_a_key_with_every_option() {
    let server = Server::start().await;
    with_browser("main-story", move |browser| async move {
        let c = &browser.client;
        log_in_to_an_empty_key_list(c, &server).await;
        let created = create_a_key_with_every_option(c).await;
        let key_id = the_key_works_as_configured(&server, &created).await;
        the_new_key_is_on_top_showing_only_its_prefix(c, &created, &key_id).await;
        revoke_through_the_dialog(c, &key_id).await;
        let decision = server.verify(&verify_body(&created, "/v1/messages?attempt=4")).await;
        assert_eq!(decision["valid"], false, "{decision:#}");
        assert_eq!(decision["code"], "API_KEY_INACTIVE", "{decision:#}");
        the_audit_log_shows_both_events(c).await;
        the_numbers_page_lists_what_keys_can_be_restricted_to(c).await;
        the_key_list_on_a_phone(c, &server, &key_id).await;
        the_key_list_in_dark_mode(&browser.driver, &server, &key_id).await;
    })
    .await;
}

async fn log_in_to_an_empty_key_list(c: &Client, server: &Server) {
    c.goto(&server.url("/")).await.expect("open /");
    find(c, "#email").await;
    assert_eq!(c.current_url().await.expect("url").path(), "/login", "no session: / leads to the login page");
    fill(c, "#email", OWNER).await;
    fill(c, "#password", PASSWORD).await;
    shot(c, "01-login").await;
    click(c, "form button[type=submit]").await;

    // The API-keys page, empty, styled by the stylesheet (the CSP lets it load).
    find(c, "#open-create").await;
    assert_eq!(c.current_url().await.expect("url").path(), "/settings/api-keys");
    assert_eq!(text(c, "main h1").await, "API keys");
    assert_eq!(text(c, ".empty-state h2").await, "No API keys yet");
    assert_eq!(text(c, ".sidenav a[aria-current=page]").await, "API keys");
    assert_eq!(background(c, "#open-create").await, "rgba(51, 85, 255, 1)", "the stylesheet is applied");
    let cookie = c.get_named_cookie("keyward_session").await.expect("session cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie}");
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)", "{cookie}");
    assert_eq!(script(c, "return document.cookie;", vec![]).await, "", "scripts cannot read the session");
    shot(c, "02-api-keys-empty").await;
}

async fn create_a_key_with_every_option(c: &Client) -> Created {
    // The defaults.
    click(c, "#open-create").await;
    find(c, "#create-dialog[open]").await;
    assert_eq!(text(c, "#create-title").await, "Create API key");
    assert!(is_checked(c, "input[name=scopes][value='messages:send']").await, "messages:send is preselected");
    let preselected = find_all(c, "input[name=scopes]:checked").await.len();
    assert_eq!(preselected, 1, "only messages:send is preselected");
    assert!(is_enabled(c, "#create-submit").await);
    shot(c, "03-create-dialog").await;

    // Name, extra scopes, HMAC.
    fill(c, "#key-name", KEY_NAME).await;
    click(c, "input[name=scopes][value='templates:read']").await;
    click(c, "input[name=scopes][value='contacts:read']").await;
    click(c, "#hmac-required").await;
    assert!(is_checked(c, "#hmac-required").await);
    shot(c, "04-create-dialog-filled").await;

    // Advanced settings: rate limit, expiry, IP allowlist, a sender number, one channel.
    click(c, "details.advanced summary").await;
    find(c, "details.advanced[open]").await;
    fill(c, "#rate-limit", "50").await;
    let expiry_field = set_expiry_in(c, 24 * 3600).await;
    fill(c, "#ip-allowlist", "127.0.0.1\n10.0.0.0/8").await;
    click(c, &format!("input[name=phone_allowlist][value='{}']", NUMBERS[0])).await;
    assert!(!find(c, "#channel-list").await.is_displayed().await.expect("displayed"), "channels hidden at first");
    click(c, "input[name=channel_scope][value=some]").await;
    find(c, "#channel-list:not([hidden])").await;
    click(c, "input[name=channels][value=marketing]").await;
    scroll_to(c, "#channel-list").await;
    shot(c, "05-create-dialog-advanced").await;

    // Create: the key and its signing secret, once.
    let at = now();
    click(c, "#create-submit").await;
    find(c, "#created-panel:not([hidden])").await;
    assert_eq!(text(c, "#create-title").await, "API key created");
    let warning = text(c, "#created-panel .alert.warning").await;
    assert!(warning.contains("shown only once"), "{warning}");
    let secret = value(c, "#created-secret").await;
    let signing_secret = value(c, "#created-signing-secret").await;
    assert!(secret.len() > 30, "the full key is shown: {secret:?}");
    assert!(!signing_secret.is_empty(), "the signing secret is shown");
    assert!(find(c, "#created-signing").await.is_displayed().await.expect("displayed"));
    assert!(find(c, "#created-done").await.is_displayed().await.expect("displayed"));
    assert!(!find(c, "#create-submit").await.is_displayed().await.expect("displayed"), "no second Create");
    assert!(absent(c, "#create-cancel:not([hidden])").await, "nothing to cancel any more");
    shot(c, "06-key-created-secret").await;
    Created { secret, signing_secret, expiry_field, at }
}

/// A verify question the key allows, signed over a `POST` to `path` (a signature is good once:
/// each question signs another request).
fn verify_body(created: &Created, path: &str) -> Value {
    json!({
        "key": created.secret,
        "scope": "messages:send",
        "client_ip": "127.0.0.1",
        "sender": NUMBERS[0],
        "channels": ["marketing"],
        "request": signed_request(&created.signing_secret, "POST", path, b"{}"),
    })
}

/// `/v1/verify` says VALID, and every option took effect; returns the key id.
async fn the_key_works_as_configured(server: &Server, created: &Created) -> String {
    let decision = server.verify(&verify_body(created, "/v1/messages")).await;
    assert_eq!(decision["valid"], true, "{decision:#}");
    assert_eq!(decision["code"], "VALID", "{decision:#}");
    assert_eq!(decision["name"], KEY_NAME, "{decision:#}");
    assert_eq!(decision["scopes"], json!(["messages:send", "templates:read", "contacts:read"]), "{decision:#}");
    assert_eq!(decision["channels"], json!(["marketing"]), "{decision:#}");
    assert_eq!(decision["rate_limit"]["limit"], 50, "{decision:#}");
    let key_id = decision["key_id"].as_str().expect("key id").to_owned();

    let mut other_ip = verify_body(created, "/v1/messages?attempt=2");
    other_ip["client_ip"] = json!("192.168.1.20");
    assert_eq!(server.verify(&other_ip).await["code"], "IP_NOT_ALLOWED");
    let mut other_sender = verify_body(created, "/v1/messages?attempt=3");
    other_sender["sender"] = json!(NUMBERS[1]);
    assert_eq!(server.verify(&other_sender).await["code"], "SENDER_NOT_ALLOWED");

    let path = format!("/v1/orgs/{}/keys/{key_id}", server.org);
    let (status, stored) = server.operator(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 200, "{stored:#}");
    let stored = &stored["key"];
    assert_eq!(stored["hmac_required"], true);
    assert_eq!(stored["ip_allowlist"], json!(["127.0.0.1", "10.0.0.0/8"]), "{stored:#}");
    assert_eq!(stored["phone_allowlist"], json!([NUMBERS[0]]));
    let expires_at =
        OffsetDateTime::parse(stored["expires_at"].as_str().expect("expires_at"), &Rfc3339).expect("rfc 3339");
    let day = time::Duration::days(1);
    assert!(
        expires_at > created.at + day - time::Duration::minutes(2) && expires_at <= now() + day,
        "the Expiry field ({}, browser time) became {expires_at}",
        created.expiry_field
    );
    key_id
}

async fn the_new_key_is_on_top_showing_only_its_prefix(c: &Client, created: &Created, key_id: &str) {
    click(c, "#created-done").await;
    let row = format!("tr[data-key-id='{key_id}']");
    find(c, &row).await;
    let first = find(c, "table.keys tbody tr").await;
    assert_eq!(first.attr("data-key-id").await.expect("attr").as_deref(), Some(key_id), "on top");
    assert_eq!(text(c, &format!("{row} td.name")).await, KEY_NAME);
    assert_eq!(text(c, &format!("{row} .status")).await, "ACTIVE");
    let shown_prefix = text(c, &format!("{row} td[data-label=Prefix] code")).await;
    let prefix = shown_prefix.trim_end_matches('…');
    assert_eq!(prefix.chars().count(), 16, "{shown_prefix:?}");
    assert!(created.secret.starts_with(prefix), "{prefix} is the start of the key");
    let scopes = text(c, &format!("{row} td.scopes")).await;
    for expected in ["messages:send", "templates:read", "contacts:read", "HMAC"] {
        assert!(scopes.contains(expected), "{expected} in {scopes:?}");
    }
    assert!(text(c, &format!("{row} td[data-label=Status]")).await.contains("Expires"));
    assert!(text(c, &format!("{row} td[data-label=Created]")).await.contains(OWNER), "who created it");
    let source = c.source().await.expect("source");
    assert!(!source.contains(&created.secret), "the full key never appears again");
    assert!(!source.contains(&created.signing_secret), "nor does the signing secret");
    shot(c, "07-key-list-new-key").await;
}

async fn revoke_through_the_dialog(c: &Client, key_id: &str) {
    let row = format!("tr[data-key-id='{key_id}']");
    click(c, &format!("{row} button.revoke")).await;
    find(c, "#revoke-dialog[open]").await;
    assert_eq!(text(c, "#revoke-confirm").await, "Revoke key");
    assert_eq!(text(c, "#revoke-cancel").await, "Cancel");
    assert_eq!(text(c, "#revoke-name").await, KEY_NAME);
    shot(c, "08-revoke-dialog").await;
    // Cancel backs out.
    click(c, "#revoke-cancel").await;
    assert!(absent(c, "#revoke-dialog[open]").await, "Cancel closes the dialog");
    assert_eq!(text(c, &format!("{row} .status")).await, "ACTIVE");
    click(c, &format!("{row} button.revoke")).await;
    find(c, "#revoke-dialog[open]").await;
    click(c, "#revoke-confirm").await;

    // Greyed, REVOKED, with its revocation time; no Revoke button any more.
    let revoked_row = format!("tr.revoked[data-key-id='{key_id}']");
    find(c, &revoked_row).await;
    assert_eq!(text(c, &format!("{revoked_row} .status")).await, "REVOKED");
    let status_cell = text(c, &format!("{revoked_row} td[data-label=Status]")).await;
    assert!(status_cell.contains("Revoked"), "{status_cell:?}");
    find(c, &format!("{revoked_row} td[data-label=Status] time[datetime]")).await;
    assert!(absent(c, &format!("{revoked_row} button.revoke")).await);
    let name_cell = find(c, &format!("{revoked_row} td.name")).await;
    assert_eq!(name_cell.css_value("background-color").await.expect("css"), "rgba(241, 243, 246, 1)", "greyed");
    assert_eq!(name_cell.css_value("text-decoration-line").await.expect("css"), "line-through", "struck through");
    shot(c, "09-key-revoked").await;
}

async fn the_audit_log_shows_both_events(c: &Client) {
    click(c, ".sidenav a[href='/settings/audit-log']").await;
    find(c, "table.audit").await;
    assert_eq!(text(c, "main h1").await, "Audit log");
    let mut seen = Vec::new();
    for row in find_all(c, "table.audit tbody tr").await {
        let cell = |css: &'static str| {
            let row = row.clone();
            async move { row.find(Locator::Css(css)).await.expect(css).text().await.expect("text") }
        };
        let (action, target, actor, when) = (
            cell("code.action").await,
            cell("td[data-label=Target]").await,
            cell("td[data-label=Actor]").await,
            cell("time").await,
        );
        if target.contains(KEY_NAME) {
            assert!(actor.contains(OWNER), "{action} by {actor:?}");
            assert!(!when.is_empty(), "{action} has a time");
            seen.push(action);
        }
    }
    assert_eq!(seen, ["key.revoked", "key.created"], "both events, newest first");
    shot(c, "10-audit-log").await;
}

async fn the_numbers_page_lists_what_keys_can_be_restricted_to(c: &Client) {
    click(c, ".sidenav a[href='/settings/numbers']").await;
    find(c, "#add-number").await;
    let listed = text(c, "main").await;
    for expected in NUMBERS.into_iter().chain(CHANNELS.iter().map(|(slug, _)| *slug)) {
        assert!(listed.contains(expected), "{expected} on the numbers page");
    }
    shot(c, "11-numbers-and-channels").await;
}

async fn the_key_list_on_a_phone(c: &Client, server: &Server, key_id: &str) {
    c.goto(&server.url("/settings/api-keys")).await.expect("open api keys");
    c.set_window_size(360, 800).await.expect("resize");
    let width = script(c, "return window.innerWidth;", vec![]).await;
    assert_eq!(width, 360, "the viewport is 360 px wide");
    find(c, &format!("tr.revoked[data-key-id='{key_id}']")).await;
    let overflow =
        script(c, "return document.documentElement.scrollWidth - document.documentElement.clientWidth;", vec![]).await;
    assert_eq!(overflow, 0, "nothing sticks out sideways on a phone");
    shot(c, "12-key-list-mobile").await;
    click(c, "#open-create").await;
    find(c, "#create-dialog[open]").await;
    shot(c, "13-create-dialog-mobile").await;
    c.set_window_size(1280, 900).await.expect("resize");
}

/// A second browser that prefers dark colours.
async fn the_key_list_in_dark_mode(driver: &ChromeDriver, server: &Server, key_id: &str) {
    let dark = driver.session(&["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]).await;
    log_in(&dark, server, OWNER, PASSWORD).await;
    find(&dark, &format!("tr.revoked[data-key-id='{key_id}']")).await;
    let is_dark = script(&dark, "return matchMedia('(prefers-color-scheme: dark)').matches;", vec![]).await;
    assert_eq!(is_dark, true, "the dark session prefers dark");
    assert_eq!(background(&dark, "body").await, "rgba(15, 19, 26, 1)", "the dark palette is applied");
    shot(&dark, "14-key-list-dark").await;
    click(&dark, "#open-create").await;
    find(&dark, "#create-dialog[open]").await;
    shot(&dark, "15-create-dialog-dark").await;
    dark.close().await.expect("close dark session");
}

// ---- 2. Scopes -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_every_scope_disables_create_with_its_message() {
    let server = Server::start().await;
    with_browser("scopes", move |browser| async move {
        let c = &browser.client;
        log_in(c, &server, OWNER, PASSWORD).await;
        click(c, "#open-create").await;
        find(c, "#create-dialog[open]").await;
        fill(c, "#key-name", "Scope-less").await;
        assert!(absent(c, "#scope-error:not(:empty)").await, "no message while a scope is selected");

        click(c, "input[name=scopes][value='templates:read']").await;
        click(c, "input[name=scopes][value='messages:send']").await;
        assert!(is_enabled(c, "#create-submit").await, "one scope left");
        click(c, "input[name=scopes][value='templates:read']").await;

        find(c, "#create-submit:disabled").await;
        assert_eq!(text(c, "#scope-error").await, "Select at least one scope.");
        assert!(!is_enabled(c, "#create-submit").await);
        shot(c, "20-scopes-none-selected").await;
        // Neither the disabled button nor Enter in the name field sends anything.
        click(c, "#create-submit").await;
        find(c, "#key-name").await.send_keys("\u{e007}").await.expect("Enter");
        find(c, "#create-dialog[open]").await;
        assert!(absent(c, "#created-panel:not([hidden])").await);

        click(c, "input[name=scopes][value='blacklist:read']").await;
        find(c, "#create-submit:enabled").await;
        assert!(absent(c, "#scope-error:not(:empty)").await, "the message goes away");
        shot(c, "21-scopes-one-selected-again").await;

        // Nothing was sent while the button was disabled.
        let (status, keys) =
            server.operator(reqwest::Method::GET, &format!("/v1/orgs/{}/keys", server.org), None).await;
        assert_eq!(status, 200);
        assert_eq!(keys["data"], json!([]), "{keys:#}");
    })
    .await;
}

// ---- 3. Server-side errors -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_advanced_settings_are_explained_in_the_dialog_keeping_the_input() {
    let server = Server::start().await;
    with_browser("errors", move |browser| async move {
        let c = &browser.client;
        log_in(c, &server, OWNER, PASSWORD).await;
        click(c, "#open-create").await;
        find(c, "#create-dialog[open]").await;
        let name = "Billing worker";
        fill(c, "#key-name", name).await;
        click(c, "input[name=scopes][value='contacts:write']").await;
        click(c, "details.advanced summary").await;
        fill(c, "#rate-limit", "5000").await;
        set_expiry_in(c, -24 * 3600).await;
        fill(c, "#ip-allowlist", "10.0.0.0/8\n300.1.2.3\n2001:db8::1").await;
        click(c, "#create-submit").await;

        let rate = text(c, "[data-error-for=rate_limit]:not(:empty)").await;
        assert_eq!(rate, "Rate limit must be an integer between 1 and 1000");
        assert_eq!(text(c, "[data-error-for=expires_at]").await, "Expiry must be in the future");
        assert_eq!(
            text(c, "[data-error-for=ip_allowlist]").await,
            "Line 2: Invalid IP address or CIDR range: 300.1.2.3"
        );
        for field in ["#rate-limit", "#expiry", "#ip-allowlist"] {
            let invalid = find(c, field).await.attr("aria-invalid").await.expect("attr");
            assert_eq!(invalid.as_deref(), Some("true"), "{field} is marked invalid");
        }
        // Still the form, with everything that was typed.
        assert!(find(c, "#create-fields").await.is_displayed().await.expect("displayed"));
        assert!(absent(c, "#created-panel:not([hidden])").await);
        assert_eq!(value(c, "#key-name").await, name);
        assert_eq!(value(c, "#rate-limit").await, "5000");
        assert_eq!(value(c, "#ip-allowlist").await, "10.0.0.0/8\n300.1.2.3\n2001:db8::1");
        assert!(is_checked(c, "input[name=scopes][value='contacts:write']").await);
        assert!(is_enabled(c, "#create-submit").await);
        scroll_to(c, "#rate-limit").await;
        shot(c, "30-create-errors").await;
        scroll_to(c, "#ip-allowlist").await;
        shot(c, "31-create-errors-ip").await;

        // Fixed, the key is created.
        fill(c, "#rate-limit", "500").await;
        set_expiry_in(c, 7 * 24 * 3600).await;
        fill(c, "#ip-allowlist", "10.0.0.0/8\n2001:db8::1").await;
        click(c, "#create-submit").await;
        find(c, "#created-panel:not([hidden])").await;
        assert!(absent(c, "#created-signing:not([hidden])").await, "no signing secret without HMAC");
        assert!(!value(c, "#created-secret").await.is_empty());
        shot(c, "32-create-fixed-created").await;
        click(c, "#created-done").await;
        assert_eq!(text(c, "table.keys tbody tr td.name").await, name);
    })
    .await;
}

// ---- 4. Read-only members --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_member_is_refused_and_sees_no_links() {
    let server = Server::start().await;
    with_browser("readonly", move |browser| async move {
        let c = &browser.client;
        log_in(c, &server, READER, PASSWORD).await;
        find(c, ".empty-state h1").await;
        for (path, name) in
            [("/settings/api-keys", "40-readonly-api-keys"), ("/settings/audit-log", "41-readonly-audit-log")]
        {
            c.goto(&server.url(path)).await.expect("open page");
            assert_eq!(text(c, ".empty-state h1").await, "You don't have access to this page", "{path}");
            assert_eq!(c.current_url().await.expect("url").path(), path);
            assert!(absent(c, "a[href='/settings/api-keys']").await, "{path}: no link to API keys");
            assert!(absent(c, "a[href='/settings/audit-log']").await, "{path}: no link to the audit log");
            assert!(absent(c, ".sidenav").await, "{path}: no settings navigation");
            assert!(absent(c, "#open-create").await, "{path}: no Create API key");
            assert!(absent(c, "table").await, "{path}: no data");
            assert!(text(c, ".topbar .who").await.contains(READER), "{path}: who is logged in");
            let (_, _, width, height) = find(c, ".empty-state").await.rectangle().await.expect("rectangle");
            assert!(width > 500.0 && height < 300.0, "{path}: the message uses the page's width ({width}×{height})");
            shot(c, name).await;
        }
    })
    .await;
}

// ---- 5. Wrong password -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_explained_on_the_login_page() {
    let server = Server::start().await;
    with_browser("login", move |browser| async move {
        let c = &browser.client;
        log_in(c, &server, OWNER, "not the password").await;
        assert_eq!(text(c, ".login-card .alert.error").await, "The email or password is not correct.");
        assert_eq!(c.current_url().await.expect("url").path(), "/login");
        assert_eq!(value(c, "#email").await, OWNER, "the email is kept");
        assert_eq!(value(c, "#password").await, "", "the password is not");
        assert!(c.get_named_cookie("keyward_session").await.is_err(), "no session");
        shot(c, "50-login-wrong-password").await;

        // Then the right one works.
        fill(c, "#password", PASSWORD).await;
        click(c, "form button[type=submit]").await;
        find(c, "#open-create").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_registers_a_number_and_a_channel_on_the_numbers_page() {
    let server = Server::start().await;
    with_browser("numbers", move |browser| async move {
        let c = &browser.client;
        log_in(c, &server, OWNER, PASSWORD).await;
        find(c, "#open-create").await;
        c.goto(&server.url("/settings/numbers")).await.expect("open the numbers page");

        fill(c, "#number", "not a number").await;
        click(c, "#add-number button[type=submit]").await;
        // The answer arrives asynchronously: wait for the message itself.
        let error = text(c, "#add-number [data-error-for=number]:not(:empty)").await;
        assert!(error.starts_with("Not a valid phone number"), "{error}");
        shot(c, "60-numbers-invalid").await;

        fill(c, "#number", "+44 20 7946 0958").await;
        click(c, "#add-number button[type=submit]").await;
        // The page reloads with the number in E.164.
        let deadline = std::time::Instant::now() + WAIT;
        while !c.source().await.expect("page source").contains("+442079460958") {
            assert!(std::time::Instant::now() < deadline, "the new number never appeared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        fill(c, "#channel-name", "Transactional").await;
        fill(c, "#channel-slug", "transactional").await;
        click(c, "#add-channel button[type=submit]").await;
        let deadline = std::time::Instant::now() + WAIT;
        while !c.source().await.expect("page source").contains("<code class=\"muted\">transactional</code>") {
            assert!(std::time::Instant::now() < deadline, "the new channel never appeared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shot(c, "61-numbers-added").await;

        // Both are offered in the create dialog from now on.
        c.goto(&server.url("/settings/api-keys")).await.expect("open the key list");
        click(c, "#open-create").await;
        find(c, "input[name=phone_allowlist][value='+442079460958']").await;
        find(c, "input[name=channels][value=transactional]").await;
    })
    .await;
}

// ---- 6. Security headers ---------------------------------------------------------------------

/// Whether the HTML has an attribute like ` onclick=`.
fn has_inline_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(at, _)| {
        let rest = &html[at + 3..];
        let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        name_len > 0 && rest[name_len..].starts_with('=')
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_carry_the_security_headers_and_a_strict_session_cookie() {
    let server = Server::start().await;
    let http = &server.http;

    // The login form sets the session cookie.
    let response =
        http.post(server.url("/login")).form(&[("email", OWNER), ("password", PASSWORD)]).send().await.expect("log in");
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"], "/");
    let set_cookie = response.headers()["set-cookie"].to_str().expect("ascii").to_owned();
    let attributes: Vec<&str> = set_cookie.split(';').map(str::trim).collect();
    assert!(attributes[0].starts_with("keyward_session=") && attributes[0].len() > 30, "{set_cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(&flag), "{flag} in {set_cookie}");
    }
    let max_age = attributes.iter().find_map(|a| a.strip_prefix("Max-Age=")).expect("Max-Age");
    assert!(max_age.parse::<u64>().expect("seconds") > 0, "{set_cookie}");
    let cookie = attributes[0].to_owned();

    // A login form posted from another site is refused.
    let response = http
        .post(server.url("/login"))
        .header("origin", "https://evil.example")
        .form(&[("email", OWNER), ("password", PASSWORD)])
        .send()
        .await
        .expect("cross-site log in");
    assert_eq!(response.status().as_u16(), 403);
    assert!(response.headers().get("set-cookie").is_none());

    let reader_cookie = {
        let response = http
            .post(server.url("/login"))
            .form(&[("email", READER), ("password", PASSWORD)])
            .send()
            .await
            .expect("log in");
        let set_cookie = response.headers()["set-cookie"].to_str().expect("ascii").to_owned();
        set_cookie.split(';').next().expect("pair").to_owned()
    };

    let pages = [
        ("/login", None, 200),
        ("/settings/api-keys", Some(&cookie), 200),
        ("/settings/audit-log", Some(&cookie), 200),
        ("/settings/numbers", Some(&cookie), 200),
        ("/settings/api-keys", Some(&reader_cookie), 403),
    ];
    for (path, cookie, status) in pages {
        let mut request = http.get(server.url(path));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie.as_str());
        }
        let response = request.send().await.expect("page");
        assert_eq!(response.status().as_u16(), status, "{path}");
        let headers = response.headers().clone();
        let header = |name: &str| headers.get(name).map(|v| v.to_str().expect("ascii").to_owned());
        let csp = header("content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"] {
            assert!(csp.contains(directive), "{path}: {directive} in {csp}");
        }
        assert_eq!(header("x-frame-options").as_deref(), Some("DENY"), "{path}");
        let referrer = header("referrer-policy").unwrap_or_else(|| panic!("{path}: no Referrer-Policy"));
        assert!(["same-origin", "no-referrer", "strict-origin"].contains(&referrer.as_str()), "{path}: {referrer}");
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
        assert_eq!(header("cache-control").as_deref(), Some("no-store"), "{path}");
        assert!(header("content-type").is_some_and(|t| t.starts_with("text/html")), "{path}");
        // Nothing inline that the CSP would block.
        let html = response.text().await.expect("html");
        assert!(!html.contains(" style=\""), "{path}: inline style");
        assert!(!html.contains("<style"), "{path}: inline stylesheet");
        assert!(!html.contains("<script>"), "{path}: inline script");
        assert!(!has_inline_handler(&html), "{path}: inline event handler");
    }
}
