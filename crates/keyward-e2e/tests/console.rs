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
use keyward_server::master_key::OperatorToken;
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
            operator_token: OperatorToken::given(&master_key.clone().into(), &operator_token),
            config: Config::default(),
            store: Arc::new(store),
            keyring: master_key.into(),
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

/// Clicks the first element matching `css`, scrolled to the middle of its container first (a
/// dialog's sticky footer would otherwise cover what sits at the bottom of the scrolled body).
async fn click(c: &Client, css: &str) {
    let element = find(c, css).await;
    let _ = c.execute("arguments[0].scrollIntoView({ block: 'center' });", vec![json!(element)]).await;
    element.click().await.unwrap_or_else(|e| panic!("clicking `{css}`: {e}"));
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
    for row in find_all(c, "table.audit tbody tr.event").await {
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

        // The slug's `pattern` compiles in Chromium (under the `v` flag), so the browser checks it;
        // and the number's message does not linger once the other form is used.
        fill(c, "#channel-name", "Bad one").await;
        fill(c, "#channel-slug", "Bad Slug").await;
        let mismatch =
            script(c, "return document.getElementById('channel-slug').validity.patternMismatch;", vec![]).await;
        assert_eq!(mismatch, true, "the slug pattern is in force");
        click(c, "#add-channel button[type=submit]").await;
        assert_eq!(
            text(c, "#channel-slug-error:not(:empty)").await,
            "Use 1–64 lowercase letters, digits and dashes, such as test-devices."
        );
        assert!(absent(c, "#add-number .field-error:not(:empty)").await, "no stale error in the other form");
        let described =
            find(c, "#channel-slug").await.attr("aria-describedby").await.expect("attr").unwrap_or_default();
        assert!(described.contains("channel-slug-error") && described.contains("channel-slug-hint"), "{described}");
        shot(c, "62-numbers-slug-checked-in-the-browser").await;
        accessible(c, "numbers, with an error").await;

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

// ---- Shared by the flows below ---------------------------------------------------------------

const ADMIN: &str = "adam.admin@acme.test";
const USER: &str = "ursula.user@acme.test";
/// 64 characters without a space: it must wrap, never widen the page.
const LONG_NAME: &str = "ThisIsAVeryLongKeyNameWithoutAnySpacesThatMustWrapInsteadOfWiden";

impl Server {
    async fn add_member(&self, email: &str, role: &str) -> String {
        let path = format!("/v1/orgs/{}/members", self.org);
        let member = self.operator_post(&path, &json!({ "email": email, "password": PASSWORD, "role": role })).await;
        member["id"].as_str().expect("member id").to_owned()
    }

    /// A key made through the API as the operator: `(id, secret)`.
    async fn create_key(&self, body: &Value) -> (String, String) {
        let created = self.operator_post(&format!("/v1/orgs/{}/keys", self.org), body).await;
        (created["key"]["id"].as_str().expect("id").to_owned(), created["secret"].as_str().expect("secret").to_owned())
    }

    async fn key(&self, id: &str) -> Value {
        let (status, body) =
            self.operator(reqwest::Method::GET, &format!("/v1/orgs/{}/keys/{id}", self.org), None).await;
        assert_eq!(status, 200, "{body:#}");
        body["key"].clone()
    }

    async fn audit(&self, query: &str) -> Vec<Value> {
        let path = format!("/v1/orgs/{}/audit?limit=100{query}", self.org);
        let (status, body) = self.operator(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{body:#}");
        body["data"].as_array().expect("events").clone()
    }

    /// A console session cookie (`keyward_session=…`) logged in over HTTP, with `user_agent`.
    async fn session_cookie(&self, email: &str, password: &str, user_agent: &str) -> Option<String> {
        let response = self
            .http
            .post(self.url("/v1/session"))
            .header("user-agent", user_agent)
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("log in");
        let cookie = response.headers().get("set-cookie")?.to_str().expect("ascii").split(';').next()?.to_owned();
        Some(cookie)
    }
}

/// Where axe-core's browser script is: `KEYWARD_AXE_JS`, else the CI cache `.ci/run` fills.
fn axe_source() -> String {
    let path = std::env::var("KEYWARD_AXE_JS")
        .unwrap_or_else(|_| "/work/ci-cache/node_modules/axe-core/axe.min.js".to_owned());
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core was not found at {path} ({e}): install it with \
             `npm install --prefix /work/ci-cache axe-core` (.ci/run does), or set KEYWARD_AXE_JS"
        )
    })
}

/// Runs axe-core on the page as it is now: no serious or critical violation is allowed.
/// The script is injected through `WebDriver`, which the page's CSP does not govern.
async fn accessible(c: &Client, page: &str) {
    static AXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let source = AXE.get_or_init(axe_source);
    let loaded = script(c, &format!("{source}\n;return typeof axe;"), vec![]).await;
    assert_eq!(loaded, "object", "{page}: axe-core did not load");
    let outcome = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] })
               .then((r) => done(r.violations
                 .filter((v) => v.impact === 'serious' || v.impact === 'critical')
                 .map((v) => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`)))
               .catch((e) => done([`axe failed: ${e}`]));",
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("{page}: axe run: {e}"));
    let violations: Vec<String> = serde_json::from_value(outcome).expect("a list of violations");
    assert!(violations.is_empty(), "{page}: accessibility violations:\n{}", violations.join("\n"));
}

/// Nothing sticks out sideways: the document is no wider than the window.
async fn fits_the_width(c: &Client, what: &str) {
    let overflow =
        script(c, "return document.documentElement.scrollWidth - document.documentElement.clientWidth;", vec![]).await;
    assert_eq!(overflow, 0, "{what}: the page scrolls sideways");
}

/// Waits until `css` holds `expected` (pages reload after a dialog saves).
async fn wait_for_text(c: &Client, css: &str, expected: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let found = find_all(c, css).await;
        if let Some(first) = found.first() {
            if first.text().await.is_ok_and(|t| t.contains(expected)) {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "`{css}` never showed {expected:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn path_of(c: &Client) -> String {
    c.current_url().await.expect("url").path().to_owned()
}

async fn full_url(c: &Client) -> String {
    c.current_url().await.expect("url").to_string()
}

// ---- 7. A key's page: detail, edit, roll; finding keys ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_inspects_edits_rolls_and_finds_keys() {
    let server = Server::start().await;
    with_browser("key-detail", move |browser| async move {
        let c = &browser.client;
        let (billing, billing_secret) = server
            .create_key(&json!({
                "name": "Billing export",
                "scopes": ["messages:send", "templates:read"],
                "channels": ["marketing"],
                "ip_allowlist": ["10.0.0.0/8"],
                "phone_allowlist": [NUMBERS[1]],
                "external_id": "crm-42",
                "meta": { "team": "billing", "ticket": 7 },
            }))
            .await;
        let (long, _) = server.create_key(&json!({ "name": LONG_NAME })).await;
        let soon = now() + time::Duration::seconds(2);
        let (expiring, _) = server
            .create_key(&json!({ "name": "Short-lived", "expires_at": soon.format(&Rfc3339).expect("rfc 3339") }))
            .await;
        log_in(c, &server, OWNER, PASSWORD).await;
        find(c, "table.keys").await;

        the_create_dialog_forgets_a_cancelled_attempt(c).await;
        tokio::time::sleep(Duration::from_millis(2_100)).await; // "Short-lived" expires.
        c.refresh().await.expect("reload");
        the_list_links_every_key_and_long_names_wrap(c, &long, &expiring).await;
        a_key_page_shows_every_field(c, &billing).await;
        accessible(c, "key detail").await;
        editing_on_the_key_page_explains_then_saves(c, &server, &billing).await;
        rolling_with_a_grace_period(c, &server, &billing, &billing_secret).await;
        editing_from_a_row(c, &server, &long).await;
        finding_keys(c, &server, &billing).await;
        a_revoked_key_offers_no_changes(c, &server, &expiring).await;
        the_key_page_on_a_phone(c, &server, &billing).await;
    })
    .await;
}

async fn the_create_dialog_forgets_a_cancelled_attempt(c: &Client) {
    click(c, "#open-create").await;
    find(c, "#create-dialog[open]").await;
    fill(c, "#key-name", "Abandoned").await;
    click(c, "details.advanced summary").await;
    fill(c, "#rate-limit", "5000").await;
    click(c, "#create-submit").await;
    text(c, "[data-error-for=rate_limit]:not(:empty)").await;
    click(c, "#create-cancel").await;
    click(c, "#open-create").await;
    find(c, "#create-dialog[open]").await;
    assert_eq!(value(c, "#key-name").await, "", "the name typed before is gone");
    assert_eq!(value(c, "#rate-limit").await, "", "so is the rate limit");
    assert!(absent(c, "#create-dialog .field-error:not(:empty)").await, "no stale error");
    assert!(absent(c, "#create-form details.advanced[open]").await, "Advanced settings closed again");
    assert!(is_checked(c, "input[name=scopes][value='messages:send']").await, "the default scope again");
    shot(c, "70-create-dialog-reopened-clean").await;
    click(c, "#create-cancel").await;
}

async fn the_list_links_every_key_and_long_names_wrap(c: &Client, long: &str, expiring: &str) {
    let long_row = format!("tr[data-key-id='{long}']");
    let link = find(c, &format!("{long_row} td.name a")).await;
    assert_eq!(link.attr("href").await.expect("href").as_deref(), Some(format!("/settings/api-keys/{long}").as_str()));
    assert_eq!(link.attr("title").await.expect("title").as_deref(), Some(LONG_NAME), "the full name on hover");
    fits_the_width(c, "key list at 1280 px").await;
    let status = text(c, &format!("tr[data-key-id='{expiring}'] td[data-label=Status]")).await;
    assert!(status.contains("EXPIRED") && status.contains("Expired"), "{status:?}");
    assert!(!status.contains("Expires"), "{status:?}");
    shot(c, "71-key-list-long-name-and-expired").await;
    accessible(c, "key list").await;
    let audit = c.current_url().await.expect("url").join("/settings/audit-log").expect("url");
    c.goto(audit.as_str()).await.expect("audit log");
    find(c, "table.audit").await;
    fits_the_width(c, "audit log at 1280 px").await;
    c.back().await.expect("back to the list");
    find(c, "table.keys").await;
}

async fn a_key_page_shows_every_field(c: &Client, billing: &str) {
    click(c, &format!("tr[data-key-id='{billing}'] td.name a")).await;
    find(c, "#key-detail").await;
    assert_eq!(path_of(c).await, format!("/settings/api-keys/{billing}"));
    assert_eq!(text(c, "#key-title").await, "Billing export");
    assert_eq!(text(c, "#key-status").await, "ACTIVE");
    let facts = [
        ("#fact-scopes", "messages:send"),
        ("#fact-scopes", "templates:read"),
        ("#fact-recipients", "Channel scoped"),
        ("#fact-recipients", "marketing"),
        ("#fact-hmac", "Not required"),
        ("#fact-rate-limit", "Default (80/s)"),
        ("#fact-ip-allowlist", "10.0.0.0/8"),
        ("#fact-phone-allowlist", NUMBERS[1]),
        ("#fact-expiry", "Never"),
        ("#fact-environment", "live"),
        ("#fact-created", "UTC"),
        ("#fact-created", "Operator"),
        ("#fact-last-used", "Never"),
        ("#fact-revoked", "No"),
        ("#fact-external-id", "crm-42"),
        ("#fact-meta", "\"team\": \"billing\""),
    ];
    for (css, expected) in facts {
        let shown = text(c, css).await;
        assert!(shown.contains(expected), "{css} shows {expected:?}: {shown:?}");
    }
    assert_eq!(text(c, "#key-events tbody tr code.action").await, "key.created", "its recent activity");
    shot(c, "72-key-detail").await;
}

async fn editing_on_the_key_page_explains_then_saves(c: &Client, server: &Server, billing: &str) {
    click(c, "#open-edit").await;
    find(c, "#edit-dialog[open]").await;
    assert_eq!(value(c, "#edit-key-name").await, "Billing export", "the dialog starts from the key");
    assert!(is_checked(c, "#edit-form input[name=scopes][value='templates:read']").await);
    assert!(is_checked(c, "#edit-form input[name=channel_scope][value=some]").await, "Channel scoped");
    assert!(is_checked(c, "#edit-form input[name=channels][value=marketing]").await);
    assert_eq!(value(c, "#edit-ip-allowlist").await, "10.0.0.0/8");
    assert!(is_checked(c, &format!("#edit-form input[name=phone_allowlist][value='{}']", NUMBERS[1])).await);
    let labels = text(c, "#edit-form fieldset:nth-of-type(2)").await;
    assert!(labels.contains("All recipients") && labels.contains("Channel scoped"), "seed 003's words: {labels:?}");
    shot(c, "73-edit-dialog").await;

    fill(c, "#edit-key-name", "Billing export (EU)").await;
    fill(c, "#edit-rate-limit", "5000").await;
    fill(c, "#edit-ip-allowlist", "10.0.0.0/8\n300.1.2.3").await;
    click(c, "#edit-submit").await;
    let rate = text(c, "#edit-rate-limit-error:not(:empty)").await;
    assert_eq!(rate, "Rate limit must be an integer between 1 and 1000");
    assert_eq!(text(c, "#edit-ip-allowlist-error").await, "Line 2: Invalid IP address or CIDR range: 300.1.2.3");
    let described = find(c, "#edit-rate-limit").await.attr("aria-describedby").await.expect("attr").unwrap_or_default();
    assert!(described.contains("edit-rate-limit-error"), "the error is tied to its field: {described:?}");
    assert_eq!(find(c, "#edit-rate-limit").await.attr("aria-invalid").await.expect("attr").as_deref(), Some("true"));
    assert_eq!(server.key(billing).await["name"], "Billing export", "nothing saved yet");
    scroll_to(c, "#edit-rate-limit").await;
    shot(c, "74-edit-dialog-errors").await;

    fill(c, "#edit-rate-limit", "200").await;
    fill(c, "#edit-ip-allowlist", "10.0.0.0/8\n192.0.2.1").await;
    click(c, "#edit-form input[name=channel_scope][value=all]").await;
    click(c, "#edit-submit").await;
    wait_for_text(c, "#key-title", "Billing export (EU)").await;
    assert!(text(c, "#fact-rate-limit").await.contains("200 requests/second"));
    assert_eq!(text(c, "#fact-recipients").await, "All recipients");
    let stored = server.key(billing).await;
    assert_eq!(stored["rate_limit"], 200, "{stored:#}");
    assert_eq!(stored["channels"], "all", "{stored:#}");
    assert_eq!(stored["ip_allowlist"], json!(["10.0.0.0/8", "192.0.2.1"]), "{stored:#}");
    assert_eq!(stored["expires_at"], Value::Null, "an untouched expiry is not sent");
    let change = text(c, "#key-events tbody tr").await;
    assert!(change.contains("key.updated") && change.contains("rate_limit"), "{change:?}");
    shot(c, "75-key-detail-edited").await;
}

async fn rolling_with_a_grace_period(c: &Client, server: &Server, billing: &str, old_secret: &str) {
    click(c, "#open-roll").await;
    find(c, "#roll-dialog[open]").await;
    assert!(is_checked(c, "input[name=grace_seconds][value='86400']").await, "24 hours by default");
    for grace in ["0", "3600", "86400", "604800"] {
        find(c, &format!("input[name=grace_seconds][value='{grace}']")).await;
    }
    shot(c, "76-roll-dialog").await;
    click(c, "input[name=grace_seconds][value='3600']").await;
    let before = now();
    click(c, "#roll-submit").await;
    find(c, "#rolled-panel:not([hidden])").await;
    let new_secret = value(c, "#rolled-secret").await;
    assert!(new_secret.starts_with("kw_live_") && new_secret != old_secret, "a new key, once");
    assert!(absent(c, "#rolled-signing:not([hidden])").await, "no signing secret without HMAC");
    assert!(text(c, "#rolled-old-expiry").await.contains("keeps working until"));
    shot(c, "77-rolled-new-key").await;
    for secret in [old_secret, new_secret.as_str()] {
        let decision = server.verify(&json!({ "key": secret, "client_ip": "192.0.2.1" })).await;
        assert_eq!(decision["valid"], true, "both work during the grace period: {decision:#}");
    }
    click(c, "#rolled-done").await;
    wait_for_text(c, "#fact-expiry", "UTC").await;
    let expires_at = server.key(billing).await["expires_at"].as_str().map(str::to_owned).expect("an expiry now");
    let expires_at = OffsetDateTime::parse(&expires_at, &Rfc3339).expect("rfc 3339");
    let hour = time::Duration::hours(1);
    assert!(expires_at >= before + hour - time::Duration::seconds(5) && expires_at <= now() + hour, "{expires_at}");
    assert!(
        text(c, "#fact-expiry").await.contains("in 59 minutes") || text(c, "#fact-expiry").await.contains("in 1 hour")
    );
    find(c, "#fact-rolled-to a").await;
    shot(c, "78-old-key-after-roll").await;
    click(c, "#fact-rolled-to a").await;
    find(c, "#fact-rolled-from").await;
    assert_eq!(text(c, "#key-title").await, "Billing export (EU)", "the same settings");
    assert!(text(c, "#fact-rate-limit").await.contains("200"));
}

async fn editing_from_a_row(c: &Client, server: &Server, long: &str) {
    c.goto(&server.url("/settings/api-keys")).await.expect("list");
    click(c, &format!("tr[data-key-id='{long}'] button.edit")).await;
    find(c, "#edit-dialog[open]").await;
    assert_eq!(value(c, "#edit-key-name").await, LONG_NAME);
    fill(c, "#edit-key-name", "Renamed from the list").await;
    click(c, "#edit-form input[name=scopes][value='contacts:read']").await;
    click(c, "#edit-submit").await;
    wait_for_text(c, &format!("tr[data-key-id='{long}'] td.name"), "Renamed from the list").await;
    assert!(text(c, &format!("tr[data-key-id='{long}'] td.scopes")).await.contains("contacts:read"));
    assert_eq!(server.key(long).await["scopes"], json!(["messages:send", "contacts:read"]));
    shot(c, "79-list-after-row-edit").await;
}

async fn finding_keys(c: &Client, server: &Server, billing: &str) {
    // The owner makes one key in the console, so "Created by" has two people to choose from.
    click(c, "#open-create").await;
    fill(c, "#key-name", "Owner's own key").await;
    click(c, "#create-submit").await;
    find(c, "#created-panel:not([hidden])").await;
    let owners_secret = value(c, "#created-secret").await;
    click(c, "#created-done").await;
    find(c, "table.keys").await;

    let names = |c: &Client| {
        let c = c.clone();
        async move {
            let mut names = Vec::new();
            for cell in find_all(&c, "table.keys tbody td.name").await {
                names.push(cell.text().await.expect("text"));
            }
            names
        }
    };
    fill(c, "#key-search", "billing").await;
    click(c, "#key-filters button[type=submit]").await;
    find(c, "#key-filters a[href='/settings/api-keys']").await; // Clear: the list is filtered
    assert_eq!(
        names(c).await,
        ["Billing export (EU)", "Billing export (EU)"],
        "by name: the rolled key and the old one"
    );
    shot(c, "80-search-by-name").await;

    let prefix = server.key(billing).await["prefix"].as_str().expect("prefix").to_owned();
    fill(c, "#key-search", &prefix[..13]).await;
    click(c, "#key-filters button[type=submit]").await;
    find(c, &format!("tr[data-key-id='{billing}']")).await;
    assert_eq!(find_all(c, "table.keys tbody tr").await.len(), 1, "by prefix: {prefix}");

    c.goto(&server.url("/settings/api-keys?status=expired")).await.expect("status filter");
    assert_eq!(names(c).await, ["Short-lived"]);
    assert_eq!(value(c, "#filter-status").await, "expired", "the filter shows what it holds");
    let owner_id = script(
        c,
        "return [...document.querySelectorAll('#filter-creator option')].find((o) => o.textContent === arguments[0]).value;",
        vec![json!(OWNER)],
    )
    .await;
    c.goto(&server.url(&format!("/settings/api-keys?created_by={}", owner_id.as_str().expect("id"))))
        .await
        .expect("by creator");
    assert_eq!(names(c).await, ["Owner's own key", "Billing export (EU)"], "the owner made these two (one by rolling)");
    shot(c, "81-filter-by-creator").await;
    c.goto(&server.url("/settings/api-keys?q=nothing-like-this")).await.expect("no match");
    assert_eq!(text(c, ".empty-state h2").await, "No keys match");

    // A pasted full key is looked up with a POST and never lands in a URL.
    click(c, "#open-lookup").await;
    find(c, "#lookup-dialog[open]").await;
    fill(c, "#lookup-key", "kw_live_0123456789ABCDEFGHIJabcdefghijKL1WMpTT").await;
    click(c, "#lookup-submit").await;
    let missing = text(c, "#lookup-error:not(:empty)").await;
    assert!(missing.starts_with("No key of this organization matches"), "{missing}");
    shot(c, "82-lookup-unknown").await;
    fill(c, "#lookup-key", &owners_secret).await;
    click(c, "#lookup-submit").await;
    wait_for_text(c, "#key-title", "Owner's own key").await;
    assert!(!full_url(c).await.contains(&owners_secret), "the key is not in the URL");
    // Pasted into the search box, it is looked up as well, not searched for.
    c.goto(&server.url("/settings/api-keys")).await.expect("list");
    fill(c, "#key-search", &owners_secret).await;
    click(c, "#key-filters button[type=submit]").await;
    wait_for_text(c, "#key-title", "Owner's own key").await;
    assert!(!full_url(c).await.contains(&owners_secret), "the key is not in the URL");
    shot(c, "83-lookup-found").await;
}

async fn a_revoked_key_offers_no_changes(c: &Client, server: &Server, key: &str) {
    server.operator_post(&format!("/v1/orgs/{}/keys/{key}/revoke", server.org), &json!({})).await;
    c.goto(&server.url(&format!("/settings/api-keys/{key}"))).await.expect("revoked key");
    assert_eq!(text(c, "#key-status").await, "REVOKED");
    for control in ["#open-edit", "#open-roll", "#open-revoke", "#edit-dialog"] {
        assert!(absent(c, control).await, "{control} on a revoked key");
    }
    let note = text(c, "#revoked-note").await;
    assert!(note.contains("cannot be edited"), "{note}");
    assert!(text(c, "#fact-revoked").await.contains("Operator"), "revoked by");
    c.goto(&server.url("/settings/api-keys")).await.expect("list");
    assert!(absent(c, &format!("tr[data-key-id='{key}'] button.edit")).await, "no Edit on its row");
    shot(c, "84-revoked-key-detail").await;
}

async fn the_key_page_on_a_phone(c: &Client, server: &Server, billing: &str) {
    c.set_window_size(390, 844).await.expect("resize");
    assert_eq!(script(c, "return window.innerWidth;", vec![]).await, 390, "the viewport is 390 px wide");
    let long_key = server.create_key(&json!({ "name": LONG_NAME })).await.0;
    c.goto(&server.url("/settings/api-keys")).await.expect("list");
    find(c, &format!("tr[data-key-id='{long_key}']")).await;
    fits_the_width(c, "key list at 390 px").await;
    shot(c, "85-key-list-390").await;
    c.goto(&server.url(&format!("/settings/api-keys/{long_key}"))).await.expect("detail");
    find(c, "#key-detail").await;
    fits_the_width(c, "key detail at 390 px").await;
    shot(c, "86-key-detail-390").await;
    c.goto(&server.url(&format!("/settings/api-keys/{billing}"))).await.expect("detail");
    click(c, "#open-edit").await;
    find(c, "#edit-dialog[open]").await;
    fill(c, "#edit-rate-limit", "0").await;
    click(c, "#edit-submit").await;
    text(c, "#edit-rate-limit-error:not(:empty)").await;
    fits_the_width(c, "edit dialog at 390 px").await;
    shot(c, "87-edit-dialog-390").await;
    c.goto(&server.url("/settings/audit-log")).await.expect("audit log");
    click(c, "button.toggle-event").await;
    fits_the_width(c, "audit log at 390 px").await;
    shot(c, "88-audit-log-390").await;
    c.set_window_size(1280, 900).await.expect("resize");
}

// ---- 8. Members, the audit log, error pages, accessibility ------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_and_the_audit_trail_and_every_page_is_accessible() {
    let server = Server::start().await;
    with_browser("members-audit", move |browser| async move {
        let c = &browser.client;
        server.add_member(ADMIN, "admin").await;
        let user_id = server.add_member(USER, "user").await;
        // Someone tries the admin's password.
        assert!(server.session_cookie(ADMIN, "not the password", "curl/8.5.0").await.is_none());
        let (key, _) = server.create_key(&json!({ "name": "Webhook relay", "rate_limit": 40 })).await;

        c.goto(&server.url("/login")).await.expect("login page");
        accessible(c, "login").await;
        log_in(c, &server, OWNER, PASSWORD).await;
        find(c, "table.keys").await;
        click(c, "#open-create").await;
        find(c, "#create-dialog[open]").await;
        accessible(c, "create dialog").await;
        c.refresh().await.expect("reload");

        an_owner_manages_members(c, &server, &user_id).await;
        the_audit_log_explains_each_change(c, &server, &key).await;
        unknown_pages_are_html(c, &server).await;
        c.goto(&server.url("/settings/numbers")).await.expect("numbers");
        accessible(c, "numbers").await;
        an_admin_reads_members_and_a_user_is_refused(c, &server).await;
    })
    .await;
}

async fn an_owner_manages_members(c: &Client, server: &Server, user_id: &str) {
    click(c, ".sidenav a[href='/settings/members']").await;
    find(c, "table.members").await;
    assert_eq!(text(c, "main h1").await, "Members");
    let listed = text(c, "table.members").await;
    for expected in [OWNER, ADMIN, USER, READER, "Owner", "Admin", "User", "Read-only", "UTC"] {
        assert!(listed.contains(expected), "{expected} in {listed:?}");
    }
    shot(c, "90-members").await;
    accessible(c, "members").await;

    // Add: a short password is explained under its field; then it works.
    click(c, "#open-add-member").await;
    find(c, "#member-dialog[open]").await;
    fill(c, "#member-email", "nina.new@acme.test").await;
    fill(c, "#member-password", "short").await;
    click(c, "#member-submit").await;
    let error = text(c, "#member-password-error:not(:empty)").await;
    assert!(!error.is_empty());
    shot(c, "91-add-member-error").await;
    accessible(c, "add member dialog").await;
    fill(c, "#member-password", "a long enough passphrase").await;
    find(c, "#member-role option[value=readonly]").await.click().await.expect("choose read-only");
    click(c, "#member-submit").await;
    wait_for_text(c, "table.members", "nina.new@acme.test").await;
    let row = text(c, "table.members tbody").await;
    assert!(row.contains("nina.new@acme.test"), "{row}");
    shot(c, "92-member-added").await;

    // Remove: the member's session ends at once.
    let cookie =
        server.session_cookie(USER, PASSWORD, "Mozilla/5.0 (member's laptop)").await.expect("the user logs in");
    click(c, &format!("button.remove-member[data-member-id='{user_id}']")).await;
    find(c, "#remove-dialog[open]").await;
    assert_eq!(text(c, "#remove-email").await, USER);
    shot(c, "93-remove-member-dialog").await;
    click(c, "#remove-confirm").await;
    let deadline = std::time::Instant::now() + WAIT;
    while !absent(c, &format!("tr[data-member-id='{user_id}']")).await {
        assert!(std::time::Instant::now() < deadline, "the removed member is still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response =
        server.http.get(server.url("/settings/api-keys")).header("cookie", cookie).send().await.expect("page");
    assert_eq!(response.status().as_u16(), 303, "the removed member's session is over");
    assert_eq!(response.headers()["location"], "/login");
    assert!(text(c, "tr.you").await.contains(OWNER), "the owner's own row");
    assert!(absent(c, "tr.you button.remove-member").await, "no Remove on one's own row");
    let events = server.audit("&action=member.added").await;
    assert!(events.iter().any(|e| e["target"]["name"] == "nina.new@acme.test"), "member.added is in the audit log");
    assert_eq!(server.audit(&format!("&action=member.removed&target={user_id}")).await.len(), 1);
}

async fn the_audit_log_explains_each_change(c: &Client, server: &Server, key: &str) {
    // A change made in this browser, so its IP and user agent are this browser's.
    c.goto(&server.url(&format!("/settings/api-keys/{key}"))).await.expect("key page");
    click(c, "#open-edit").await;
    fill(c, "#edit-rate-limit", "60").await;
    click(c, "#edit-submit").await;
    wait_for_text(c, "#fact-rate-limit", "60 requests/second").await;
    click(c, "a[href^='/settings/audit-log?target=']").await;
    find(c, "table.audit").await;
    assert_eq!(value(c, "#filter-target").await, key, "filtered to this key");
    let actions: Vec<String> = {
        let mut actions = Vec::new();
        for cell in find_all(c, "table.audit tr.event code.action").await {
            actions.push(cell.text().await.expect("text"));
        }
        actions
    };
    assert_eq!(actions, ["key.updated", "key.created"], "only this key's events");
    let time_cell = text(c, "table.audit tr.event td[data-label=Time]").await;
    assert!(time_cell.contains("just now") && time_cell.contains(" UTC"), "relative and absolute UTC: {time_cell:?}");

    click(c, "table.audit tr.event button.toggle-event").await;
    let detail = find(c, "tr.event-detail:not([hidden])").await;
    let shown = detail.text().await.expect("text");
    for expected in ["rate_limit", "40", "60", "Trace ID", "127.0.0.1", "HeadlessChrome", OWNER] {
        assert!(shown.contains(expected), "{expected} in the expanded event: {shown:?}");
    }
    assert_eq!(text(c, "tr.event-detail:not([hidden]) td.old").await, "40");
    assert_eq!(text(c, "tr.event-detail:not([hidden]) td.new").await, "60");
    let trace = text(c, "tr.event-detail:not([hidden]) .trace-id").await;
    assert!(trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()), "{trace:?}");
    assert_eq!(
        find(c, "button.toggle-event").await.attr("aria-expanded").await.expect("attr").as_deref(),
        Some("true")
    );
    shot(c, "94-audit-event-expanded").await;
    accessible(c, "audit log, expanded").await;

    // The failed login: an attempt on the admin's account by someone not logged in.
    c.goto(&server.url("/settings/audit-log?action=member.login_failed")).await.expect("failed logins");
    let row = text(c, "table.audit tr.event").await;
    assert!(row.contains("Unauthenticated") && row.contains(ADMIN), "{row:?}");
    assert!(!text(c, "tr.event td[data-label=Actor]").await.contains(ADMIN), "the admin did nothing");
    click(c, "button.toggle-event").await;
    assert!(text(c, "tr.event-detail:not([hidden]) .user-agent").await.contains("curl/8.5.0"));
    shot(c, "95-audit-failed-login").await;

    // A time range: today (UTC) holds every event; a day in the past none.
    let today = now().date().to_string();
    c.goto(&server.url(&format!("/settings/audit-log?since={today}&until={today}&target={key}"))).await.expect("range");
    assert_eq!(find_all(c, "table.audit tr.event").await.len(), 2);
    assert_eq!(value(c, "#filter-since").await, today);
    c.goto(&server.url(&format!("/settings/audit-log?until=2020-01-01&target={key}"))).await.expect("range");
    assert_eq!(text(c, ".empty-state h2").await, "No events");
    c.goto(&server.url("/settings/audit-log?since=yesterday")).await.expect("bad date");
    assert_eq!(text(c, "#filter-dates-error").await, "Dates look like 2030-01-31.");

    // Downloads hold exactly the filtered events.
    c.goto(&server.url(&format!("/settings/audit-log?target={key}"))).await.expect("filtered");
    let fetch = "const done = arguments[arguments.length - 1];
                 fetch(document.getElementById(arguments[0]).href, { credentials: 'same-origin' })
                   .then(async (r) => done([r.status, r.headers.get('content-type'), r.headers.get('content-disposition'), await r.text()]))
                   .catch((e) => done([0, '', '', String(e)]));";
    let csv = c.execute_async(fetch, vec![json!("download-csv")]).await.expect("csv");
    assert_eq!(csv[0], 200, "{csv}");
    assert!(csv[1].as_str().unwrap_or_default().starts_with("text/csv"), "{csv}");
    assert!(csv[2].as_str().unwrap_or_default().starts_with("attachment; filename=\"audit-log-"), "{csv}");
    let lines: Vec<&str> = csv[3].as_str().expect("body").split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "a header and two events: {lines:#?}");
    assert!(lines[0].starts_with("at,action,actor_type,actor_id,actor_name,actor_ip,user_agent"), "{}", lines[0]);
    assert!(lines[1].contains(",key.updated,member,") && lines[1].contains("HeadlessChrome"), "{}", lines[1]);
    let jsonl = c.execute_async(fetch, vec![json!("download-jsonl")]).await.expect("jsonl");
    assert_eq!(jsonl[0], 200, "{jsonl}");
    assert!(jsonl[2].as_str().unwrap_or_default().ends_with(".jsonl\""), "{jsonl}");
    let events: Vec<Value> =
        jsonl[3].as_str().expect("body").lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["action"], "key.updated");
    assert_eq!(events[0]["changes"]["rate_limit"], json!({ "old": 40, "new": 60 }));
    assert_eq!(events[1]["action"], "key.created");
    assert!(events.iter().all(|e| e["target"]["id"] == key));
}

async fn unknown_pages_are_html(c: &Client, server: &Server) {
    for path in ["/settings/nothing-here", "/settings/api-keys/key_doesnotexist", "/settings/api-keys/not-an-id"] {
        let response = server.http.get(server.url(path)).send().await.expect("page");
        assert_eq!(response.status().as_u16(), 303, "{path}: without a session, to the login page");
        c.goto(&server.url(path)).await.expect("unknown page");
        assert_eq!(text(c, ".empty-state h1").await, "Page not found", "{path}");
        find(c, ".sidenav").await;
    }
    let cookie = c.get_named_cookie("keyward_session").await.expect("cookie");
    let response = server
        .http
        .get(server.url("/settings/nothing-here"))
        .header("cookie", format!("keyward_session={}", cookie.value()))
        .send()
        .await
        .expect("page");
    assert_eq!(response.status().as_u16(), 404);
    assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("text/html"));
    shot(c, "96-not-found").await;
    accessible(c, "404 page").await;
}

async fn an_admin_reads_members_and_a_user_is_refused(c: &Client, server: &Server) {
    click(c, ".topbar form button[type=submit]").await; // Log out
    find(c, "#email").await;
    log_in(c, server, ADMIN, PASSWORD).await;
    find(c, "table.keys").await;
    c.goto(&server.url("/settings/members")).await.expect("members");
    find(c, "table.members").await;
    assert!(text(c, "#members-read-only").await.contains("Only owners can add or remove members"));
    assert!(absent(c, "#open-add-member").await, "no Add member for an admin");
    assert!(absent(c, "button.remove-member").await, "no Remove for an admin");
    assert!(absent(c, "#member-dialog").await);
    shot(c, "97-members-admin-read-only").await;
    accessible(c, "members, read-only").await;

    click(c, ".topbar form button[type=submit]").await;
    find(c, "#email").await;
    log_in(c, server, READER, PASSWORD).await;
    find(c, ".empty-state h1").await;
    for path in ["/settings/members", "/settings/api-keys", "/settings/audit-log", "/settings/numbers"] {
        c.goto(&server.url(path)).await.expect("page");
        assert_eq!(text(c, ".empty-state h1").await, "You don't have access to this page", "{path}");
        assert!(absent(c, "a[href='/settings/members']").await, "{path}: no link to members");
    }
    shot(c, "98-members-readonly-403").await;
    accessible(c, "403 page").await;
    let cookie = c.get_named_cookie("keyward_session").await.expect("cookie");
    let response = server
        .http
        .get(server.url("/settings/members"))
        .header("cookie", format!("keyward_session={}", cookie.value()))
        .send()
        .await
        .expect("page");
    assert_eq!(response.status().as_u16(), 403);
}
