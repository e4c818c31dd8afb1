//! The web console's end-to-end browser tests, and nothing else: they live in `tests/console.rs`
//! and drive the real server through headless Chromium with `chromedriver`
//! (Debian packages `chromium` and `chromium-driver`).
#![forbid(unsafe_code)]
