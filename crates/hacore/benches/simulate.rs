//! Simulating a full migration plan: 1 master -> 7 masters on 3 hosts, every
//! failure set of size <= 2 at every step. Target: under 100 ms.
//!
//! `cargo bench -p hacore --bench simulate`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hacore::Topology;
use hacore::plan::{Options, plan};
use hacore::simulate::simulate;

fn topologies(masters: usize) -> (Topology, Topology) {
    let node = |i: usize| {
        format!(
            "  - {{ name: m{i}, role: control-plane, address: 10.0.20.{}, hypervisor: h{}, vmid: {}, cpus: 4, memoryGiB: 8, diskGiB: 40 }}\n",
            100 + i,
            i % 3,
            200 + i
        )
    };
    let workers: String = (0..20)
        .map(|i| {
            format!(
                "  - {{ name: w{i}, role: worker, address: 10.0.20.{}, hypervisor: h{} }}\n",
                150 + i,
                i % 3
            )
        })
        .collect();
    let hosts = "hypervisors:\n  - { name: h0, memoryGiB: 256, cpus: 64 }\n  - { name: h1, memoryGiB: 256, cpus: 64 }\n  - { name: h2, memoryGiB: 256, cpus: 64 }\n";
    let from = format!(
        "cluster: big\ncontrolPlaneEndpoint: {{ address: 10.0.20.100 }}\nnetwork: {{ cidr: 10.0.20.0/24 }}\n{hosts}nodes:\n{}{workers}",
        node(0)
    );
    let to = format!(
        "cluster: big\ncontrolPlaneEndpoint: {{ address: 10.0.20.99 }}\nnetwork: {{ cidr: 10.0.20.0/24 }}\nloadBalancer: {{ kind: haproxy, frontend: \"10.0.20.99:6443\", pool: api }}\n{hosts}nodes:\n{}{workers}",
        (0..masters).map(node).collect::<String>()
    );
    (
        Topology::from_yaml("from", &from).unwrap().0,
        Topology::from_yaml("to", &to).unwrap().0,
    )
}

fn bench(c: &mut Criterion) {
    let (from, to) = topologies(7);
    let p = plan(
        &from,
        &to,
        None,
        &Options {
            template: Some(9000),
        },
    )
    .unwrap();
    let report = simulate(&p, 2);
    eprintln!(
        "7-master plan: {} steps, {} failure sets per step, {} window(s), critical: {:?}",
        report.steps.len(),
        report.failure_sets,
        report.windows.len(),
        report.critical
    );
    c.bench_function("simulate/1->7 masters, failures<=2", |b| {
        b.iter(|| simulate(black_box(&p), 2))
    });
    c.bench_function("plan/1->7 masters", |b| {
        b.iter(|| {
            plan(
                black_box(&from),
                black_box(&to),
                None,
                &Options {
                    template: Some(9000),
                },
            )
            .unwrap()
        })
    });
    let (from3, to3) = topologies(3);
    let p3 = plan(
        &from3,
        &to3,
        None,
        &Options {
            template: Some(9000),
        },
    )
    .unwrap();
    c.bench_function("simulate/1->3 masters, failures<=2", |b| {
        b.iter(|| simulate(black_box(&p3), 2))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
