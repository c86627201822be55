//! The image, run the way a target runs it: ssh → `docker run` with the run directory mounted
//! → outputs appear on the host → Docker reports the exit code.

use std::path::Path;

use cosmos_core::RunId;
use cosmos_core::launch::{
    ContainerLaunch, RunLayout, TransferLaunch, docker_run_argv, torchrun_argv,
};
use cosmos_testkit::{SshHost, sim_image};
use serde_json::{Value, json};

use super::support::{Scene, TestResult, ffprobe_frames};

struct Launched {
    code: i32,
    logs: String,
    layout: RunLayout,
}

fn ssh_out(host: &SshHost, argv: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let out = host.ssh(argv).output()?;
    if !out.status.success() {
        return Err(format!("{argv:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Puts `video` and a spec in a run directory under the host's root, starts the container
/// detached through ssh and waits for it.
fn launch(
    host: &SshHost,
    video: &Path,
    prompt: &str,
    env: &[(&str, &str)],
) -> Result<Launched, Box<dyn std::error::Error>> {
    launch_with(
        host,
        video,
        env,
        &[],
        |input| json!({"prompt": prompt, "input_video_path": input, "edge": {"control_weight": 1.0}}),
    )
}

/// As `launch`, with the spec made from the input's path on the host and extra
/// `transfer.py` arguments (`{run}` in them stands for the run folder: the container sees
/// only that of the target root, and the blob store).
fn launch_with(
    host: &SshHost,
    video: &Path,
    env: &[(&str, &str)],
    extra: &[&str],
    spec: impl Fn(&str) -> Value,
) -> Result<Launched, Box<dyn std::error::Error>> {
    let run_id = RunId::at(cosmos_core::now(), rand_u128());
    let root = host.root().display().to_string();
    let layout = RunLayout::new(&root, &run_id);
    let input = layout.input(cosmos_core::InputKind::Color, "mp4");
    std::fs::create_dir_all(Path::new(&input).parent().ok_or("no parent")?)?;
    std::fs::copy(video, &input)?;
    std::fs::write(layout.spec(), spec(&input).to_string())?;
    let env_text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(layout.env_file(), env_text)?;
    let outputs = layout.outputs();
    let spec_path = layout.spec();
    let mut command = torchrun_argv(&TransferLaunch {
        gpus: 1,
        spec_path: &spec_path,
        output_dir: &outputs,
        is_av: false,
        checkpoint_dir: "checkpoints",
        batch_input: None,
    });
    command.extend(extra.iter().map(|a| a.replace("{run}", layout.dir())));
    let image = sim_image()?;
    let cosmos_dir = host.cosmos_dir().display().to_string();
    let env_file = layout.env_file();
    let argv = docker_run_argv(&ContainerLaunch {
        job: run_id.as_str(),
        image: &image,
        gpu_devices: None,
        shm_size: "1g",
        cosmos_dir: &cosmos_dir,
        root: &root,
        mounts: &[host.records_mount()],
        env_file: Some(&env_file),
        command,
    });
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    ssh_out(host, &argv)?;
    let name = cosmos_core::launch::container_name(run_id.as_str());
    let code: i32 = ssh_out(host, &["docker", "wait", &name])?.trim().parse()?;
    let logs_out = host.ssh(&["docker", "logs", &name]).output()?;
    let logs = String::from_utf8_lossy(&logs_out.stdout).into_owned()
        + &String::from_utf8_lossy(&logs_out.stderr);
    ssh_out(host, &["docker", "rm", &name])?;
    Ok(Launched { code, logs, layout })
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, RandomState};
    let s = RandomState::new();
    (u128::from(s.hash_one(1u8)) << 64) | u128::from(s.hash_one(2u8))
}

#[test]
fn a_run_in_the_image_over_ssh_writes_verified_outputs() -> TestResult {
    let host = SshHost::start()?;
    let scene = Scene::new();
    let video = scene.video("in.mp4", "320x180", 130);
    let record = host.record_file();
    let record_s = record.display().to_string();
    let run = launch(
        &host,
        &video,
        "a lighthouse at dusk",
        &[
            ("COSMOS_SIM_RECORD", &record_s),
            ("COSMOS_SIM_LOAD_SECONDS", "0"),
        ],
    )?;
    assert_eq!(run.code, 0, "{}", run.logs);
    let out = Path::new(&run.layout.outputs()).join("output.mp4");
    assert_eq!(std::fs::read(&out)?, std::fs::read(&video)?);
    assert_eq!(ffprobe_frames(&out), 130);
    assert_eq!(
        std::fs::read_to_string(Path::new(&run.layout.outputs()).join("output.txt"))?,
        "a lighthouse at dusk"
    );
    assert!(
        run.logs
            .contains("Making all control and input videos to be length of 130 frames."),
        "{}",
        run.logs
    );
    assert!(
        run.logs.contains("2/2 ["),
        "the clip bar reaches docker logs: {}",
        run.logs
    );
    let lines: Vec<Value> = std::fs::read_to_string(&record)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 1, "the model ran exactly once");
    assert_eq!(lines[0]["cwd"], json!("/workspace"));
    Ok(())
}

#[test]
fn docker_reports_guardrail_and_oom_exits() -> TestResult {
    let host = SshHost::start()?;
    let scene = Scene::new();
    let video = scene.video("in.mp4", "160x90", 20);
    let blocked = launch(&host, &video, "forbiddenfruit in a bowl", &[])?;
    assert_eq!(blocked.code, 1);
    assert!(
        blocked.logs.contains("GUARDRAIL BLOCKED: BLOCKLIST:"),
        "{}",
        blocked.logs
    );
    assert!(
        blocked
            .logs
            .contains("Guardrail blocked generation for entire batch.")
    );
    assert!(
        !Path::new(&blocked.layout.outputs())
            .join("output.mp4")
            .exists()
    );

    let oom = launch(&host, &video, "a calm lake", &[("COSMOS_SIM_FAIL", "oom")])?;
    assert_eq!(oom.code, 1);
    assert!(
        oom.logs
            .contains("torch.OutOfMemoryError: CUDA out of memory."),
        "{}",
        oom.logs
    );
    Ok(())
}

#[test]
fn batches_and_spec_errors_behave_the_same_inside_the_image() -> TestResult {
    let host = SshHost::start()?;
    let scene = Scene::new();
    let video = scene.video("in.mp4", "160x90", 20);
    let run = launch_with(
        &host,
        &video,
        &[],
        &["--batch_input_path", "{run}/batch.jsonl"],
        |input| {
            // `<run>/inputs/color.mp4` → `<run>/batch.jsonl`.
            let run_dir = Path::new(input)
                .parent()
                .and_then(Path::parent)
                .expect("the run folder");
            let batch = run_dir.join("batch.jsonl");
            let lines = [
                json!({"visual_input": input, "prompt": "one"}),
                json!({"visual_input": input, "prompt": "two"}),
            ];
            let text: Vec<String> = lines.iter().map(Value::to_string).collect();
            std::fs::write(&batch, text.join("\n")).expect("write the batch file");
            json!({"input_video_path": input, "vis": {"control_weight": 0.5}})
        },
    )?;
    assert_eq!(run.code, 0, "{}", run.logs);
    for (n, prompt) in ["one", "two"].iter().enumerate() {
        let dir = Path::new(&run.layout.outputs()).join(format!("video_{n}"));
        assert!(
            dir.join("output.mp4").is_file(),
            "video_{n}/output.mp4 is missing:\n{}",
            run.logs
        );
        assert_eq!(std::fs::read_to_string(dir.join("prompt.txt"))?, *prompt);
    }

    let bad = launch_with(
        &host,
        &video,
        &[],
        &[],
        |_| json!({"edge": {"control_weight": 1.0}}),
    )?;
    assert_eq!(bad.code, 1);
    assert!(
        bad.logs
            .contains("ValueError: Must have 'input_video' specified if sigma_max < 80"),
        "{}",
        bad.logs
    );
    let usage = launch_with(
        &host,
        &video,
        &[],
        &["--frobnicate"],
        |input| json!({"input_video_path": input, "edge": {}}),
    )?;
    // torchrun exits 1 for any failed worker, argparse's 2 included.
    assert_eq!(usage.code, 1, "{}", usage.logs);
    assert!(
        usage
            .logs
            .contains("transfer.py: error: unrecognized arguments: --frobnicate"),
        "{}",
        usage.logs
    );
    Ok(())
}
