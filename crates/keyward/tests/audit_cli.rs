//! `keyward audit verify` against a real SQLite file edited behind keyward's back, and
//! `keyward member add`.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const OPERATOR_TOKEN: &str = "kwop_audit_cli_test_token_0123456789";
const PASSWORD: &str = "correct horse battery staple";

fn keyward(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    command
        .current_dir(dir)
        .env_remove("KEYWARD_MASTER_KEY")
        .env_remove("KEYWARD_CONFIG")
        .env_remove("KEYWARD_DATABASE_URL")
        .env_remove("KEYWARD_LISTEN")
        .env_remove("KEYWARD_MEMBER_PASSWORD")
        .env("KEYWARD_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("KEYWARD_LOG", "warn");
    command
}

fn run(dir: &Path, args: &[&str]) -> Output {
    keyward(dir).args(args).output().expect("run keyward")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a command that must succeed and parses its JSON output.
fn run_json(dir: &Path, args: &[&str]) -> Value {
    let output = run(dir, args);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stdout(&output)))
}

fn create_org(dir: &Path, name: &str) -> String {
    run_json(dir, &["org", "create", "--name", name])["id"].as_str().expect("org id").to_owned()
}

fn create_key(dir: &Path, org: &str, name: &str) -> String {
    run_json(dir, &["keys", "create", "--org", org, "--name", name])["key"]["id"].as_str().expect("key id").to_owned()
}

/// An org with three keys, one of them revoked: four audit events, rowids 1–4.
fn org_with_history(dir: &Path) -> String {
    let org = create_org(dir, "Acme");
    let first = create_key(dir, &org, "first");
    create_key(dir, &org, "second");
    create_key(dir, &org, "third");
    run_json(dir, &["keys", "revoke", "--org", &org, &first]);
    org
}

fn database(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("keyward.db")).expect("open keyward.db")
}

/// The id of the audit event in this row.
fn event_id(dir: &Path, rowid: i64) -> String {
    database(dir)
        .query_row("SELECT id FROM audit_events WHERE rowid = ?1", [rowid], |row| row.get(0))
        .expect("audit row")
}

fn assert_intact(dir: &Path, events: usize) {
    let output = run(dir, &["audit", "verify"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("intact"), "{text}");
    assert!(text.contains(&format!("{events} events")), "{events} events checked: {text}");
}

/// Runs `audit verify` on a broken log: a non-zero exit, and stderr naming the event and org.
fn assert_broken_at(dir: &Path, org: &str, event: &str) -> String {
    let output = run(dir, &["audit", "verify"]);
    let text = stderr(&output);
    assert!(!output.status.success(), "a broken chain must fail: {}", stdout(&output));
    assert_ne!(output.status.code(), Some(2), "not a usage error: {text}");
    assert!(text.contains(event), "stderr names the broken event {event}: {text}");
    assert!(text.contains(org), "stderr names the org {org}: {text}");
    assert!(!stdout(&output).contains("intact"));
    text
}

#[test]
fn audit_verify_reports_an_intact_log() {
    let dir = tempfile::tempdir().unwrap();
    org_with_history(dir.path());
    let other = create_org(dir.path(), "Globex");
    create_key(dir.path(), &other, "theirs");
    assert_intact(dir.path(), 5);
}

#[test]
fn audit_verify_on_an_empty_database_is_intact() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["migrate"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_intact(dir.path(), 0);
}

#[test]
fn editing_an_audit_row_in_the_database_is_reported_with_the_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let org = org_with_history(dir.path());
    assert_intact(dir.path(), 4);
    let edited = event_id(dir.path(), 2);
    let changed = database(dir.path())
        .execute("UPDATE audit_events SET target_name = 'tampered' WHERE rowid = 2", [])
        .expect("update");
    assert_eq!(changed, 1);
    let text = assert_broken_at(dir.path(), &org, &edited);
    assert!(text.contains("edited"), "{text}");
}

/// Each column an attacker might rewrite is covered by the hash.
#[test]
fn editing_any_recorded_field_breaks_the_chain() {
    let edits = [
        "actor_id = 'usr_someoneelse'",
        "actor_type = 'member'",
        "actor_name = 'someone@example.com'",
        "actor_ip = '203.0.113.9'",
        "action = 'key.updated'",
        "target_id = 'key_other'",
        "changes = '{}'",
        "trace_id = '00000000000000000000000000000001'",
        "at = at + 1",
    ];
    let dir = tempfile::tempdir().unwrap();
    let org = org_with_history(dir.path());
    let columns = "actor_id, actor_type, actor_name, actor_ip, action, target_id, changes, trace_id, at";
    let snapshot = |db: &rusqlite::Connection| -> Vec<rusqlite::types::Value> {
        db.query_row(&format!("SELECT {columns} FROM audit_events WHERE rowid = 3"), [], |row| {
            (0..9).map(|i| row.get(i)).collect()
        })
        .unwrap()
    };
    let original = snapshot(&database(dir.path()));
    for edit in edits {
        let changed =
            database(dir.path()).execute(&format!("UPDATE audit_events SET {edit} WHERE rowid = 3"), []).unwrap();
        assert_eq!(changed, 1, "{edit}");
        assert_ne!(snapshot(&database(dir.path())), original, "{edit} changed the row");
        assert_broken_at(dir.path(), &org, &event_id(dir.path(), 3));
        // Put the row back as it was: the chain is whole again.
        let restore = "UPDATE audit_events SET actor_id = ?1, actor_type = ?2, actor_name = ?3, actor_ip = ?4, \
                       action = ?5, target_id = ?6, changes = ?7, trace_id = ?8, at = ?9 WHERE rowid = 3";
        database(dir.path()).execute(restore, rusqlite::params_from_iter(original.iter())).unwrap();
        assert_intact(dir.path(), 4);
    }
}

#[test]
fn deleting_an_audit_row_breaks_the_link_of_the_next_event() {
    let dir = tempfile::tempdir().unwrap();
    let org = org_with_history(dir.path());
    let next = event_id(dir.path(), 3);
    let deleted = database(dir.path()).execute("DELETE FROM audit_events WHERE rowid = 2", []).expect("delete");
    assert_eq!(deleted, 1);
    let text = assert_broken_at(dir.path(), &org, &next);
    assert!(text.contains("removed"), "{text}");
}

#[test]
fn rewriting_a_rows_hash_does_not_hide_the_edit() {
    let dir = tempfile::tempdir().unwrap();
    let org = org_with_history(dir.path());
    // Copy the next row's hash over, as a naive forger would: the edited row no longer matches its
    // content, or the next one no longer links.
    let db = database(dir.path());
    db.execute(
        "UPDATE audit_events SET hash = (SELECT hash FROM audit_events WHERE rowid = 3), target_name = 'x' WHERE rowid = 2",
        [],
    )
    .unwrap();
    let first_broken = event_id(dir.path(), 2);
    assert_broken_at(dir.path(), &org, &first_broken);
}

#[test]
fn a_broken_chain_in_one_org_names_that_org() {
    let dir = tempfile::tempdir().unwrap();
    let acme = org_with_history(dir.path());
    let globex = create_org(dir.path(), "Globex");
    create_key(dir.path(), &globex, "theirs");
    create_key(dir.path(), &globex, "theirs too");
    assert_intact(dir.path(), 6);
    let rowid: i64 = database(dir.path())
        .query_row("SELECT MIN(rowid) FROM audit_events WHERE org_id = ?1", [&globex], |row| row.get(0))
        .unwrap();
    database(dir.path())
        .execute("UPDATE audit_events SET actor_ip = '198.51.100.1' WHERE rowid = ?1", [rowid])
        .unwrap();
    let text = assert_broken_at(dir.path(), &globex, &event_id(dir.path(), rowid));
    assert!(!text.contains(&acme), "{text}");
}

#[test]
fn member_add_prints_the_member_and_records_it_in_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let org = org_with_history(dir.path());
    let output = keyward(dir.path())
        .args(["member", "add", "--org", &org, "--email", "Admin@Example.com", "--role", "admin"])
        .env("KEYWARD_MEMBER_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(!text.contains(PASSWORD) && !text.contains("argon2"), "{text}");
    let member: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let id = member["id"].as_str().unwrap();
    assert!(id.starts_with("usr_"), "{member:#}");
    assert_eq!(member["email"], "admin@example.com");
    assert_eq!(member["role"], "admin");
    assert_eq!(member["org_id"], org.as_str());
    assert!(member["created_at"].as_str().unwrap().ends_with('Z'), "{member:#}");

    // The password is stored as an argon2id hash only.
    let stored: String = database(dir.path())
        .query_row("SELECT password_hash FROM members WHERE id = ?1", [id], |row| row.get(0))
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    let (action, actor, changes): (String, String, String) = database(dir.path())
        .query_row("SELECT action, actor_id, changes FROM audit_events WHERE target_id = ?1", [id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .unwrap();
    assert_eq!((action.as_str(), actor.as_str()), ("member.added", "operator"));
    assert!(!changes.contains(PASSWORD) && !changes.contains("argon2"), "{changes}");
    assert_intact(dir.path(), 5);

    // The password can come from standard input too.
    let mut child = keyward(dir.path())
        .args(["member", "add", "--org", &org, "--email", "reader@example.com", "--role", "readonly"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let member: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(member["role"], "readonly");
}

#[test]
fn member_add_refuses_duplicates_bad_input_and_unknown_orgs_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let org = create_org(dir.path(), "Acme");
    let add = |org: &str, email: &str, role: &str, password: &str| {
        keyward(dir.path())
            .args(["member", "add", "--org", org, "--email", email, "--role", role])
            .env("KEYWARD_MEMBER_PASSWORD", password)
            .output()
            .unwrap()
    };
    let output = add(&org, "ann@example.com", "owner", PASSWORD);
    assert!(output.status.success(), "{}", stderr(&output));

    let duplicate = add(&org, "ANN@example.com", "user", PASSWORD);
    assert!(!duplicate.status.success());
    assert!(stderr(&duplicate).contains("already exists"), "{}", stderr(&duplicate));

    for (org, email, role, password, mentions) in [
        (org.as_str(), "bob@example.com", "user", "short", "Password"),
        (org.as_str(), "not-an-email", "user", PASSWORD, "email"),
        (org.as_str(), "bob@example.com", "superuser", PASSWORD, "superuser"),
        ("not-an-org", "bob@example.com", "user", PASSWORD, "--org"),
    ] {
        let output = add(org, email, role, password);
        assert!(!output.status.success(), "{email} {role}");
        assert_eq!(output.status.code(), Some(2), "bad input is a usage error: {}", stderr(&output));
        assert!(stderr(&output).contains(mentions), "{mentions}: {}", stderr(&output));
        assert!(!stderr(&output).contains(password) || password == PASSWORD, "{}", stderr(&output));
    }
    let unknown = add("org_0000000000000000000000", "bob@example.com", "user", PASSWORD);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("org_0000000000000000000000"), "{}", stderr(&unknown));
    let count: i64 = database(dir.path()).query_row("SELECT COUNT(*) FROM members", [], |row| row.get(0)).unwrap();
    assert_eq!(count, 1);
    assert_intact(dir.path(), 1);
}
