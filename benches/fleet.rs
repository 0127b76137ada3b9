//! Aggregating a fleet's one-line verdicts (`sigma fleet --from FILE`):
//! 10,000 nodes' lines, as pdsh prints them, read and grouped by finding.
//! The budget: under 1 s.

use criterion::{Criterion, criterion_group, criterion_main};
use sigma::fleet::Gather;
use sigma::report::DoctorReport;
use sigma::report::verdict::Verdict;

/// 10,000 `host: {verdict}` lines cycling through the shipped simulated
/// nodes, with every 500th host silent but for pdsh's timeout message.
fn fleet_lines() -> Vec<String> {
    let verdicts: Vec<String> = sigma::sim::list()
        .iter()
        .map(|s| {
            let node = sigma::sim::load(&s.name).expect("sim loads");
            Verdict::of(&DoctorReport::new(node.snapshot)).to_line()
        })
        .collect();
    (0..10_000)
        .map(|i| {
            if i % 500 == 499 {
                format!("pdsh@head: gpu-{i:05}: command timeout")
            } else {
                format!("gpu-{i:05}: {}", verdicts[i % verdicts.len()])
            }
        })
        .collect()
}

fn aggregate(c: &mut Criterion) {
    let lines = fleet_lines();
    c.bench_function("fleet: gather and group 10,000 verdict lines", |b| {
        b.iter(|| {
            let mut gather = Gather::default();
            for line in &lines {
                gather.feed(line);
            }
            let report = gather.finish();
            assert_eq!(report.summary.nodes, 10_000);
            report
        })
    });
}

criterion_group!(benches, aggregate);
criterion_main!(benches);
