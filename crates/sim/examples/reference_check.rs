//! Development check: runs one policy on a PlanetLab day folder (sorted or
//! listed order) and prints the per-step trace next to CloudSim's.
//! Usage: reference_check DAY_DIR POLICY [ORDER_FILE] [REFERENCE_TRACE_CSV]
use keel_model::{VmSeries, WorkloadTrace};
use keel_sim::{run_observed, SimConfig, StepRecord};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(&args[1]);
    let policy = args[2].parse().unwrap();
    let names: Vec<String> = match args.get(3).filter(|s| !s.is_empty() && *s != "sorted") {
        Some(order) => std::fs::read_to_string(order)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => {
            let mut n: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            n.sort();
            n
        }
    };
    let vms = names
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            let cpu = text
                .lines()
                .take(288)
                .map(|l| l.trim().parse::<i32>().unwrap() as f64 / 100.0)
                .collect();
            VmSeries {
                name: name.clone(),
                cpu_utilization: cpu,
                usage: None,
            }
        })
        .collect();
    let trace = WorkloadTrace::new(300.0, vms).unwrap();
    let mut steps: Vec<StepRecord> = Vec::new();
    let report = run_observed(&trace, &SimConfig::planetlab(policy), &mut steps).unwrap();
    if let Some(reference) = args.get(4) {
        let text = std::fs::read_to_string(reference).unwrap();
        let mut shown = 0;
        for (line, s) in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("time"))
            .zip(&steps)
        {
            let f: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
            let ours = [
                s.time_seconds,
                s.energy_kwh,
                s.migrations_total as f64,
                s.migrations_started as f64,
                s.active_hosts as f64,
                s.vms_alive as f64,
                s.requested_mips,
                s.host_utilization_mips,
            ];
            let differs = f
                .iter()
                .zip(&ours)
                .skip(1)
                .any(|(a, b)| (a - b).abs() > 1e-6_f64.max(a.abs() * 1e-6) + 0.06);
            if differs && shown < 8 {
                println!("ref  {line}");
                println!(
                    "ours {:.1},{:.6},{},{},{},{},{:.1},{:.1}",
                    ours[0], ours[1], ours[2], ours[3], ours[4], ours[5], ours[6], ours[7]
                );
                shown += 1;
            }
        }
        println!("first differing steps shown: {shown}");
    }
    println!("{report:#?}");
}
