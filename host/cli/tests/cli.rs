//! The `trellis` binary as a user runs it.

use std::process::Command;

fn trellis() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
}

#[test]
fn malformed_manifest_error_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: [oops\n",
    )
    .unwrap();
    let out = trellis().args(["app", "put"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.yaml"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
}

#[test]
fn help_teaches_the_first_steps() {
    let out = trellis().arg("--help").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("trellis up --example echo"), "{stdout}");
}

#[test]
fn no_controller_is_a_clear_error() {
    // A port nobody listens on: the error says what to start.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = trellis()
        .args(["app", "list", "--nats", &format!("nats://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to NATS"), "{stderr}");
}
