//! `nvidia-smi` for the simulated GPUs: `--query-gpu=… --format=csv[,noheader][,nounits]`,
//! `-L` and the plain table; without GPUs it fails as it does without a driver.

use crate::knobs::Knobs;

const DRIVER: &str = "550.54.15";
const CUDA: &str = "12.4";
const MEMORY_MIB: u64 = 81559;
const NO_DRIVER: &str = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n\n";

struct Gpu {
    index: u32,
    name: String,
    uuid: String,
    /// Utilisation % and memory used (MiB) now.
    load: (u32, u64),
}

fn gpus(knobs: &Knobs) -> Vec<Gpu> {
    (0..knobs.gpus)
        .map(|index| {
            let h = cosmos_core::sha256::hex_digest(format!("cosmos-sim gpu {index}").as_bytes());
            Gpu {
                index,
                load: crate::gpu_state::load(knobs, index),
                name: knobs.gpu_name.clone(),
                uuid: format!(
                    "GPU-{}-{}-{}-{}-{}",
                    &h[0..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..32]
                ),
            }
        })
        .collect()
}

/// A queryable field: its CSV header, unit, and value for a GPU.
fn field(name: &str, gpu: &Gpu) -> Option<(&'static str, &'static str, String)> {
    Some(match name {
        "index" => ("index", "", gpu.index.to_string()),
        "name" | "gpu_name" => ("name", "", gpu.name.clone()),
        "uuid" | "gpu_uuid" => ("uuid", "", gpu.uuid.clone()),
        "count" => ("count", "", String::new()),
        "memory.total" => ("memory.total", "MiB", MEMORY_MIB.to_string()),
        "memory.used" => ("memory.used", "MiB", gpu.load.1.to_string()),
        "memory.free" => (
            "memory.free",
            "MiB",
            MEMORY_MIB.saturating_sub(gpu.load.1).to_string(),
        ),
        "utilization.gpu" => ("utilization.gpu", "%", gpu.load.0.to_string()),
        "utilization.memory" => ("utilization.memory", "%", "0".into()),
        "temperature.gpu" => ("temperature.gpu", "", "32".into()),
        "driver_version" => ("driver_version", "", DRIVER.into()),
        "pci.bus_id" => (
            "pci.bus_id",
            "",
            format!("00000000:{:02X}:00.0", 0x18 + gpu.index * 0x10),
        ),
        _ => return None,
    })
}

/// Runs `nvidia-smi ARGS`; returns (stdout, stderr, exit code).
pub fn run(args: &[String], knobs: &Knobs) -> (String, String, u8) {
    if knobs.gpus == 0 {
        return (NO_DRIVER.to_owned(), String::new(), 9);
    }
    let list = gpus(knobs);
    let mut query = None;
    let mut format = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let value = |prefix: &str| -> Option<String> {
            a.strip_prefix(prefix)
                .and_then(|v| v.strip_prefix('='))
                .map(str::to_owned)
                .or_else(|| (a == prefix).then(|| args.get(i + 1).cloned()).flatten())
        };
        if a == "-L" || a == "--list-gpus" {
            let text: String = list
                .iter()
                .map(|g| format!("GPU {}: {} (UUID: {})\n", g.index, g.name, g.uuid))
                .collect();
            return (text, String::new(), 0);
        } else if a.starts_with("--query-gpu") {
            query = value("--query-gpu");
            if !a.contains('=') {
                i += 1;
            }
        } else if a.starts_with("--format") {
            format = value("--format");
            if !a.contains('=') {
                i += 1;
            }
        } else if a == "-h" || a == "--help" {
            return (
                "NVIDIA System Management Interface -- cosmos-sim\n".into(),
                String::new(),
                0,
            );
        } else {
            return (
                "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.

"
                .to_owned(),
                String::new(),
                2,
            );
        }
        i += 1;
    }
    match query {
        Some(q) => csv(&q, format.as_deref(), &list),
        None => (table(&list), String::new(), 0),
    }
}

fn csv(query: &str, format: Option<&str>, list: &[Gpu]) -> (String, String, u8) {
    let Some(format) = format else {
        return (
            "'--format=' switch is missing. Please run 'nvidia-smi -h' for help.\n\n".into(),
            String::new(),
            2,
        );
    };
    let opts: Vec<&str> = format.split(',').map(str::trim).collect();
    if opts.first() != Some(&"csv") {
        return (
            format!("\"{format}\" is not a valid format. Please run 'nvidia-smi -h' for help.\n\n"),
            String::new(),
            2,
        );
    }
    let header = !opts.contains(&"noheader");
    let units = !opts.contains(&"nounits");
    let names: Vec<&str> = query.split(',').map(str::trim).collect();
    for name in &names {
        if field(name, &list[0]).is_none() {
            return (
                format!("Field \"{name}\" is not a valid field to query.\n\n"),
                String::new(),
                2,
            );
        }
    }
    let mut out = String::new();
    if header {
        let cols: Vec<String> = names
            .iter()
            .filter_map(|n| field(n, &list[0]))
            .map(|(h, unit, _)| {
                if unit.is_empty() {
                    h.to_owned()
                } else {
                    format!("{h} [{unit}]")
                }
            })
            .collect();
        out.push_str(&cols.join(", "));
        out.push('\n');
    }
    for gpu in list {
        let cols: Vec<String> = names
            .iter()
            .filter_map(|n| field(n, gpu))
            .map(|(h, unit, v)| {
                let v = if h == "count" {
                    list.len().to_string()
                } else {
                    v
                };
                if units && !unit.is_empty() {
                    format!("{v} {unit}")
                } else {
                    v
                }
            })
            .collect();
        out.push_str(&cols.join(", "));
        out.push('\n');
    }
    (out, String::new(), 0)
}

fn table(list: &[Gpu]) -> String {
    let rule = format!("+{}+\n", "-".repeat(89));
    let cells = "+-----------------------------------------+------------------------+----------------------+\n";
    let mut t = format!(
        "{}       \n",
        chrono::Local::now().format("%a %b %e %H:%M:%S %Y")
    );
    t.push_str(&rule);
    t.push_str(&format!(
        "| NVIDIA-SMI {DRIVER:<22} Driver Version: {DRIVER:<14} CUDA Version: {CUDA:<9}|\n"
    ));
    t.push_str("|-----------------------------------------+------------------------+----------------------+\n");
    t.push_str("| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |\n");
    t.push_str("| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |\n");
    t.push_str("|                                         |                        |               MIG M. |\n");
    t.push_str("|=========================================+========================+======================|\n");
    for g in list {
        let name: String = g.name.chars().take(28).collect();
        let bus = format!("00000000:{:02X}:00.0", 0x18 + g.index * 0x10);
        t.push_str(&format!(
            "| {:>3}  {name:<28}    On  |   {bus} Off |                    0 |\n",
            g.index
        ));
        t.push_str(&format!("| N/A   32C    P0             70W /  700W |       0MiB / {MEMORY_MIB:>6}MiB |      0%      Default |\n"));
        t.push_str("|                                         |                        |             Disabled |\n");
        t.push_str(cells);
    }
    t.push('\n');
    t.push_str(&rule);
    t.push_str(&format!("| {:<87} |\n", "Processes:"));
    t.push_str(&format!(
        "| {:<87} |\n",
        " GPU   GI   CI        PID   Type   Process name                              GPU Memory"
    ));
    t.push_str(&format!(
        "| {:<87} |\n",
        "       ID   ID                                                               Usage"
    ));
    t.push_str(&format!("|{}|\n", "=".repeat(89)));
    t.push_str(&format!("| {:<87} |\n", " No running processes found"));
    t.push_str(&rule);
    t
}
