//! `nvidia-smi` answers for the simulated GPUs.

use super::support::{SIM, Scene, TestResult, run};

const QUERY: &str = "--query-gpu=index,name,uuid,memory.total,memory.used,utilization.gpu";

#[test]
fn csv_query_lists_each_gpu() -> TestResult {
    let scene = Scene::new();
    let out = run(&mut scene.command(&["nvidia-smi", QUERY, "--format=csv,noheader,nounits"])).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{}", out.stdout);
    let fields: Vec<&str> = lines[3].split(", ").collect();
    assert_eq!(fields[0], "3");
    assert_eq!(fields[1], "NVIDIA H100 80GB HBM3");
    assert!(
        fields[2].starts_with("GPU-") && fields[2].len() == 40,
        "{}",
        fields[2]
    );
    assert_eq!(&fields[3..], ["81559", "0", "0"]);
    let uuids: std::collections::HashSet<&str> = lines
        .iter()
        .map(|l| l.split(", ").nth(2).unwrap_or_default())
        .collect();
    assert_eq!(uuids.len(), 8, "uuids are distinct");

    let out = run(scene
        .command(&["nvidia-smi", QUERY, "--format=csv"])
        .env("COSMOS_SIM_GPUS", "2"))
    .ok();
    assert_eq!(
        out.stdout.lines().next(),
        Some("index, name, uuid, memory.total [MiB], memory.used [MiB], utilization.gpu [%]")
    );
    assert_eq!(out.stdout.lines().count(), 3);
    assert!(
        out.stdout.contains(", 81559 MiB, 0 MiB, 0 %"),
        "{}",
        out.stdout
    );
    Ok(())
}

#[test]
fn bad_queries_and_missing_gpus_fail_as_nvidia_smi_does() -> TestResult {
    let scene = Scene::new();
    let out = run(&mut scene.command(&[
        "nvidia-smi",
        "--query-gpu=index,power.madness",
        "--format=csv",
    ]));
    assert_eq!(out.code, 2);
    assert!(
        out.stdout
            .contains("Field \"power.madness\" is not a valid field to query."),
        "{}",
        out.stdout
    );
    let out = run(scene
        .command(&["nvidia-smi", QUERY, "--format=csv"])
        .env("COSMOS_SIM_GPUS", "0"));
    assert_eq!(out.code, 9);
    assert!(out.stdout.starts_with(
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    ));
    Ok(())
}

#[test]
fn plain_table_and_list_by_name() -> TestResult {
    let scene = Scene::new();
    let link = scene.path().join("nvidia-smi");
    std::os::unix::fs::symlink(SIM, &link)?;
    let out = std::process::Command::new(&link)
        .env("COSMOS_SIM_GPUS", "2")
        .env("COSMOS_SIM_GPU_NAME", "NVIDIA A100-SXM4-80GB")
        .output()?;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        table.contains("| NVIDIA-SMI ") && table.contains("Driver Version:"),
        "{table}"
    );
    assert_eq!(table.matches("NVIDIA A100-SXM4-80GB").count(), 2, "{table}");
    let out = std::process::Command::new(&link)
        .arg("-L")
        .env("COSMOS_SIM_GPUS", "3")
        .output()?;
    let list = String::from_utf8_lossy(&out.stdout);
    assert_eq!(list.lines().count(), 3);
    assert!(
        list.starts_with("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-"),
        "{list}"
    );
    Ok(())
}
