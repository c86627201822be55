//! Turning errors into what the user reads and the exit code (STYLE.md: 0 ok, 1 the subject
//! failed, 2 usage/config/connection/internal).

use cosmos_engine::EngineError;
use cosmos_media::MediaError;

/// The error and its causes on one line, each said once: a cause whose text is already in
/// what came before (`cannot read x: No such file…` over the io error itself) is left out.
pub fn message(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// A fix to suggest for an error, when one is known: the engine says what went wrong (its
/// code), the CLI says which command fixes it.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<EngineError>() {
            return engine_hint(e);
        }
        if let Some(e) = cause.downcast_ref::<MediaError>() {
            return media_hint(e);
        }
        let text = cause.to_string();
        if text.starts_with("invalid config file")
            || text.starts_with("unknown configuration variable")
        {
            return Some("`cosmos config default` prints every valid key with its default".into());
        }
    }
    None
}

fn engine_hint(e: &EngineError) -> Option<String> {
    use cosmos_core::IdKind;
    let hint = match (e, e.code()) {
        (EngineError::Media(m), _) => return media_hint(m),
        (EngineError::NotFound { kinds, .. }, _) => match kinds.as_slice() {
            [IdKind::Run] => "`cosmos list` shows recent runs".into(),
            [IdKind::Prompt] => {
                "`cosmos prompt list` shows prompts; `cosmos search WORDS` finds them".into()
            }
            [IdKind::InputSet] => "`cosmos inputs list` shows input sets".into(),
            _ => "`cosmos list`, `cosmos prompt list` and `cosmos inputs list` show ids".into(),
        },
        (EngineError::NoInputSet(id), _) => {
            format!("attach control videos with `cosmos prompt edit {id} --inputs DIR`")
        }
        (EngineError::Spec(cosmos_core::spec::SpecError::Cosmos(c)), _)
            if c.message.contains("sigma_max < 80") =>
        {
            "the input set has no colour video: pass `--sigma-max 80` to start from noise, or add a color.mp4".into()
        }
        (EngineError::Spec(cosmos_core::spec::SpecError::Cosmos(c)), _)
            if c.message.contains("'input_control'") =>
        {
            "without a colour video every control needs its own video: add it to the input set or drop it from `--weights`".into()
        }
        (_, "needs_inputs") => {
            "`cosmos prompt list` shows the prompts you can run by name or id".into()
        }
        (_, "prompt_has_inputs") => {
            "run it on other videos as new text (`cosmos run \"TEXT\" DIR`), or change its videos with `cosmos prompt edit ID --inputs DIR`".into()
        }
        (_, "target_needs_host") => {
            "`cosmos target add NAME ssh://user@host:port`, `--host HOST`, or `--local`".into()
        }
        (_, "ambiguous_id") => "use one of the ids listed (or more characters of it)".into(),
        (_, "bad_id") => {
            "ids look like `rs_01jd3k…` (runs), `ps_…` (prompts), `in_…` (input sets)".into()
        }
        (_, "input_problems") => {
            "fix the videos, or pass `--force` to `cosmos inputs add` to register them anyway"
                .into()
        }
        (_, "target_unreachable") => "check that the host is up and sshd listens on that port (`cosmos target edit NAME --host … --port …`; `cosmos target check NAME`)".into(),
        (EngineError::Remote(cosmos_engine::RemoteError::UnknownHostKey { name, .. }), _) => {
            format!("cosmos target trust {name}")
        }
        (EngineError::Remote(cosmos_engine::RemoteError::HostKeyChanged { name, .. }), _) => {
            format!("only if you know why it changed: `cosmos target trust {name} --replace` replaces the pinned key")
        }
        (_, "no_such_target") => "`cosmos target list` shows them".into(),
        (_, "no_default_target") => "add one with `cosmos target add NAME ssh://user@host --default`, rehearse locally with `cosmos quickstart`, or pass `--target NAME`".into(),
        (_, "does_not_fit") => {
            "use a smaller --gpus, or `cosmos target edit NAME --gpus N`".into()
        }
        (_, "name_taken") => {
            "choose another `--name`, or leave it out to have one generated".into()
        }
        (_, "target_exists") => {
            "choose another name, or change it with `cosmos target edit NAME`".into()
        }
        (_, "in_use") => "pass `--force` to remove it with what depends on it".into(),
        (_, "bad_search_query") => "search syntax: plain words match as written; \"exact phrase\", prefix*, AND / OR / NOT between terms, (groups), name: / text: / negative: before a term".into(),
        (_, "database_unavailable") => {
            "check the path, or set COSMOS_HOME to a writable folder".into()
        }
        (_, "target_in_use") => {
            "let them finish, `cosmos kill` them, or remove the target anyway with --force".into()
        }
        (_, "floating_image") => {
            "`--image cosmos-transfer1:<tag>` (what `cosmos target setup` builds), or pass `--allow-floating` to accept it".into()
        }
        (_, "checkpoints_gated") => {
            "`cosmos secret set hf_token` sets the token (from a prompt or stdin); `cosmos target setup NAME` resumes".into()
        }
        (_, "setup_interrupted" | "setup_download_failed") => {
            "`cosmos target setup NAME` picks up where it stopped".into()
        }
        (_, "setup_disk_space") => {
            "the space wanted is `setup.checkpoint_space_gb` in cosmos.toml (300 GB for Cosmos-Transfer1)".into()
        }
        (_, "setup_checkout_occupied" | "setup_checkout_changed") => {
            "`cosmos target edit NAME --cosmos-dir DIR` points the target at another checkout folder".into()
        }
        (_, "setup_needs_docker") => {
            "add a Docker target for the host (`cosmos target add NAME ssh://user@host`)".into()
        }
        _ => return None,
    };
    Some(hint)
}

/// What to do about a run that failed with `code`.
pub fn failure_hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "guardrail_blocked" => "rephrase the prompt, then `cosmos retry` the run",
        "guardrail_video_blocked" => {
            "the prompt passed; the video did not: run it with another seed (`cosmos run … --seed N`), or change the prompt or the controls"
        }
        "out_of_memory" => "run with more GPUs (`--gpus`), a shorter input, or on a bigger GPU",
        "checkpoint_missing" | "checkpoints_missing" => {
            "`cosmos target setup NAME` downloads the checkpoints (`cosmos target verify NAME` shows what is there)"
        }
        "image_missing" => {
            "build or `docker load` the image on the host, or `cosmos target edit NAME --image …`"
        }
        "no_gpu" => {
            "install the NVIDIA driver on the host, or pick another target (`cosmos target check NAME`)"
        }
        "disk_full" => "free space under the target's root, or `cosmos target edit NAME --root …`",
        "input_changed" => "register the folder again (`cosmos inputs add DIR`)",
        "gpu_shortage" => "run with fewer `--gpus`, or on a bigger host",
        "misplaced" => "set the target's slots to its GPUs: `cosmos target edit NAME --gpus N`",
        "gpu_runtime_missing" => {
            "install the NVIDIA Container Toolkit on the host (`sudo nvidia-ctk runtime configure --runtime=docker`, then restart docker); for an engine without GPUs, `cosmos target edit NAME --no-gpu-flag`"
        }
        _ => return None,
    })
}

fn media_hint(e: &MediaError) -> Option<String> {
    match e {
        MediaError::NotAVideo { .. } => {
            Some("re-export the file as H.264 mp4, or move it out of the folder".into())
        }
        _ => None,
    }
}

/// Whether the error is stdout having gone away (`cosmos list | head`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::message;
    use anyhow::Context as _;

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let media = cosmos_media::MediaError::Io {
            path: "/nowhere".into(),
            source: io,
        };
        let err = Err::<(), _>(media)
            .context("registering the inputs")
            .expect_err("an error");
        assert_eq!(
            message(&err),
            "registering the inputs: cannot read `/nowhere`: entity not found"
        );
        let plain = anyhow::anyhow!("outer").context("top");
        assert_eq!(message(&plain), "top: outer");
    }
}
