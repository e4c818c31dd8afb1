//! Embeds every `migrations/<14-digit version>_<name>.sql` file, in version order, so adding a
//! migration is adding a file (what `sqlx::migrate!` does for the Postgres crate).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::{env, fs};

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = PathBuf::from(manifest_dir).join("migrations");

    let mut migrations = Vec::new();
    for entry in fs::read_dir(&dir).expect("migrations/ is readable") {
        let path = entry.expect("migrations/ is readable").path();
        let name = path.file_name().and_then(|name| name.to_str()).expect("migration file names are UTF-8").to_owned();
        let Some(stem) = name.strip_suffix(".sql") else { continue };
        let version = stem
            .split_once('_')
            .map(|(version, _)| version)
            .filter(|version| version.len() == 14 && version.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|version| version.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("migration {name}: expected <YYYYMMDDhhmmss>_<name>.sql"));
        let path = path.to_str().expect("migration paths are UTF-8").to_owned();
        migrations.push((version, name, path));
    }
    migrations.sort();
    for pair in migrations.windows(2) {
        assert!(pair[0].0 != pair[1].0, "two migrations share version {}", pair[0].0);
    }

    let mut out = String::from(
        "/// Every migration, oldest first.\n\
         #[allow(clippy::unreadable_literal)] // versions read as the file names spell them\n\
         pub(crate) const MIGRATIONS: &[Migration] = &[\n",
    );
    for (version, name, _) in &migrations {
        // Relative to the crate, not this build's absolute path: a stale build output from
        // another checkout of the same crate must not embed that checkout's files.
        let relative = format!("/migrations/{name}");
        writeln!(
            out,
            "    Migration {{ version: {version}, sql: include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {relative:?})) }}, // {name}"
        )
            .expect("writing to a String cannot fail");
    }
    out.push_str("];\n");
    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    fs::write(PathBuf::from(out_dir).join("migrations.rs"), out).expect("OUT_DIR is writable");
}
