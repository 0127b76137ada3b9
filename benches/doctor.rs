//! `sigma --simulate h100x8-xid79 doctor`, the whole process, timed end to end
//! (the budget: under 200 ms). Also the in-process part alone.

use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};

fn doctor_process(c: &mut Criterion) {
    let exe = env!("CARGO_BIN_EXE_sigma");
    c.bench_function("sigma --simulate h100x8-xid79 doctor (process)", |b| {
        b.iter(|| {
            let out = Command::new(exe)
                .args(["--simulate", "h100x8-xid79", "doctor"])
                .output()
                .expect("sigma runs");
            assert_eq!(out.status.code(), Some(4));
        })
    });
    c.bench_function("load sim + checks (in process)", |b| {
        b.iter(|| {
            let node = sigma::sim::load("h100x8-xid79").expect("sim loads");
            sigma::checks::run_all(&node.snapshot)
        })
    });
}

criterion_group!(benches, doctor_process);
criterion_main!(benches);
