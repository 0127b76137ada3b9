//! The audit log under load: 8 Sigma processes appending 1,000 records each
//! at once, with rotation on, lose none and tear none.
//!
//! The writers are this test binary run again with `SIGMA_AUDIT_WRITER`
//! set: each opens the log as a Sigma process does and appends its
//! records.

use std::process::Command;

use sigma::audit::{AuditLog, Record, read};

const WRITERS: usize = 8;
const RECORDS: usize = 1_000;

/// The writer's side: runs only in the child processes.
#[test]
fn writer() {
    let Ok(path) = std::env::var("SIGMA_AUDIT_WRITER") else {
        return;
    };
    let id = std::env::var("SIGMA_AUDIT_WRITER_ID").unwrap();
    // Files of 600 KB: the 2 MB written rotate about three times under the
    // writers' feet, and the rotated files kept still hold it all.
    let mut log = AuditLog::at(Some(path.into())).rotate_at(600 * 1024);
    for n in 0..RECORDS {
        log.record(Record::Question {
            text: format!("writer {id} record {n} {}", "x".repeat(n % 200)),
        });
    }
}

#[test]
fn eight_processes_lose_no_record() {
    if std::env::var_os("SIGMA_AUDIT_WRITER").is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let me = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..WRITERS)
        .map(|id| {
            Command::new(&me)
                .args(["--exact", "writer", "--test-threads", "1"])
                .env("SIGMA_AUDIT_WRITER", &path)
                .env("SIGMA_AUDIT_WRITER_ID", id.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    assert!(
        dir.path().join("audit.jsonl.2").exists(),
        "the writers rotated the log under each other"
    );
    let contents = read(&path).unwrap().unwrap();
    assert_eq!(contents.unreadable, 0, "no torn line");
    let mut seen = vec![vec![false; RECORDS]; WRITERS];
    for (entry, _) in &contents.entries {
        let Record::Question { text } = &entry.record else {
            panic!("unexpected record {entry:?}")
        };
        let words: Vec<&str> = text.split(' ').collect();
        let (id, n): (usize, usize) = (words[1].parse().unwrap(), words[3].parse().unwrap());
        assert!(!seen[id][n], "writer {id} record {n} twice");
        seen[id][n] = true;
    }
    let missing: usize = seen.iter().flatten().filter(|s| !**s).count();
    // Rotation keeps KEEP_ROTATED old files: size them so nothing is dropped.
    assert_eq!(
        missing,
        0,
        "{missing} of {} records lost",
        WRITERS * RECORDS
    );
}
