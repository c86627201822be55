//! Turning errors into what the user reads and the exit code (STYLE.md: 0 ok, 1 the subject
//! failed, 2 usage/config/connection/internal).

use cosmos_engine::EngineError;
use cosmos_media::MediaError;
use cosmos_store::StoreError;

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

/// A fix to suggest for an error, when one is known.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<EngineError>() {
            return engine_hint(e);
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return store_hint(e);
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
    match e {
        EngineError::Store(s) => store_hint(s),
        EngineError::Media(m) => media_hint(m),
        EngineError::NotFound { kinds, .. } => Some(
            match kinds.as_slice() {
                [IdKind::Run] => "`cosmos list` shows recent runs",
                [IdKind::Prompt] => "`cosmos prompt list` shows prompts; `cosmos search WORDS` finds them",
                [IdKind::InputSet] => "`cosmos inputs list` shows input sets",
                _ => "`cosmos list`, `cosmos prompt list` and `cosmos inputs list` show ids",
            }
            .into(),
        ),
        EngineError::Ambiguous { .. } => Some("type more characters of the id".into()),
        EngineError::Id(_) => Some("ids look like `rs_01jd3k…` (runs), `ps_…` (prompts), `in_…` (input sets)".into()),
        EngineError::InputProblems { .. } => {
            Some("fix the videos, or pass `--force` to `cosmos inputs add` to register them anyway".into())
        }
        EngineError::NoInputSet(id) => Some(format!("attach control videos with `cosmos prompt edit {id} --inputs DIR`")),
        EngineError::Spec(cosmos_core::spec::SpecError::Cosmos(c)) if c.message.contains("sigma_max < 80") => Some(
            "the input set has no colour video: pass `--sigma-max 80` to start from noise, or add a color.mp4".into(),
        ),
        EngineError::Spec(cosmos_core::spec::SpecError::Cosmos(c)) if c.message.contains("'input_control'") => Some(
            "without a colour video every control needs its own video: add it to the input set or drop it from `--weights`".into(),
        ),
        EngineError::Remote(cosmos_remote::RemoteError::Unreachable { .. }) => Some(
            "check that the host is up and sshd listens on that port (`cosmos target edit NAME --host … --port …`; `cosmos target check NAME`)".into(),
        ),
        _ => None,
    }
}

fn store_hint(e: &StoreError) -> Option<String> {
    match e {
        StoreError::NameTaken(_) => Some("choose another `--name`, or leave it out to have one generated".into()),
        StoreError::BadQuery { .. } => Some(
            "search syntax: words, \"exact phrase\", prefix*, AND / OR / NOT, name:word; put words with punctuation in double quotes".into(),
        ),
        StoreError::Open { .. } => Some("check the path, or set COSMOS_HOME to a writable folder".into()),
        _ => None,
    }
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
