//! The SQLite store against real database files.

mod common;

use chrono::Utc;

use cosmos_core::{IdKind, InputSet, PromptId, RunId, RunKind, RunParams, RunStatus};
use cosmos_store::{
    NewPrompt, NewRun, PromptName, PromptUpdate, RunFilter, SqliteStore, Store, StoreError,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn store() -> Result<(tempfile::TempDir, SqliteStore), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("nested/cosmos.db")).await?;
    Ok((dir, store))
}

fn new_prompt(text: &str, name: PromptName, set: Option<&InputSet>) -> NewPrompt {
    NewPrompt {
        id: PromptId::new(),
        name,
        text: text.into(),
        negative: None,
        input_set_id: set.map(|s| s.id.clone()),
        parent_id: None,
        model: None,
        created_at: cosmos_core::now(),
    }
}

fn new_run(prompt: &PromptId) -> NewRun {
    NewRun {
        id: RunId::new(),
        prompt_id: prompt.clone(),
        kind: RunKind::Transfer,
        name: None,
        prompt_text: "t".into(),
        negative_prompt: None,
        input_set_id: None,
        params: RunParams::default(),
        priority: 0,
        created_at: cosmos_core::now(),
        note: "queued".into(),
        retry_of: None,
        target_pin: None,
        sweep_id: None,
        signature: None,
        upscale_of: None,
    }
}

async fn hit_names(store: &SqliteStore, query: &str) -> Result<Vec<String>, StoreError> {
    Ok(store
        .search_prompts(query, 10, ("[", "]"))
        .await?
        .into_iter()
        .map(|h| h.prompt.name)
        .collect())
}

#[tokio::test]
async fn reopening_keeps_data_and_schema() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("c.db");
    let set = common::input_set("scene");
    {
        let s = SqliteStore::open(&path).await?;
        s.insert_input_set(&set).await?;
        s.close().await;
    }
    let s = SqliteStore::open(&path).await?;
    assert_eq!(s.input_set(&set.id).await?, set);
    assert_eq!(
        s.input_set_by_fingerprint(&set.fingerprint)
            .await?
            .map(|s| s.id),
        Some(set.id)
    );
    Ok(())
}

#[tokio::test]
async fn a_prompt_keeps_its_model_through_edits_until_cleared() -> TestResult {
    let (_d, s) = store().await?;
    let mut new = new_prompt("a van", PromptName::Exact("van".into()), None);
    new.model = Some("transfer2.5".into());
    let p = s.create_prompt(&new).await?;
    assert_eq!(s.prompt(&p.id).await?.model.as_deref(), Some("transfer2.5"));
    // An edit of something else leaves it; clearing it makes it the default's again.
    let edited = s
        .update_prompt(
            &p.id,
            &PromptUpdate {
                text: Some("a blue van".into()),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(edited.model.as_deref(), Some("transfer2.5"));
    let cleared = s
        .update_prompt(
            &p.id,
            &PromptUpdate {
                model: Some(None),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(cleared.model, None);
    assert_eq!(s.prompt_by_name("van").await?.map(|p| p.model), Some(None));
    Ok(())
}

#[tokio::test]
async fn generated_names_get_suffixes_and_exact_names_conflict() -> TestResult {
    let (_d, s) = store().await?;
    let a = s
        .create_prompt(&new_prompt(
            "x",
            PromptName::Generated("harbour".into()),
            None,
        ))
        .await?;
    let b = s
        .create_prompt(&new_prompt(
            "y",
            PromptName::Generated("harbour".into()),
            None,
        ))
        .await?;
    assert_eq!((a.name.as_str(), b.name.as_str()), ("harbour", "harbour-2"));
    let err = s
        .create_prompt(&new_prompt(
            "z",
            PromptName::Exact("harbour-2".into()),
            None,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NameTaken(ref n) if n == "harbour-2"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn full_text_index_follows_inserts_edits_and_deletes() -> TestResult {
    let (_d, s) = store().await?;
    let p = s
        .create_prompt(&new_prompt(
            "A robot arm in a kitchen",
            PromptName::Exact("arm".into()),
            None,
        ))
        .await?;
    s.create_prompt(&new_prompt(
        "Snow falling on a harbour",
        PromptName::Exact("snow".into()),
        None,
    ))
    .await?;
    assert_eq!(hit_names(&s, "kitchen").await?, ["arm"]);
    assert_eq!(hit_names(&s, "kitch*").await?, ["arm"]);
    assert_eq!(hit_names(&s, "falls").await?, ["snow"], "porter stemming");
    assert_eq!(hit_names(&s, "\"robot arm\"").await?, ["arm"]);
    assert_eq!(hit_names(&s, "kitchen OR harbour").await?.len(), 2);
    assert_eq!(hit_names(&s, "kitchen NOT robot").await?.len(), 0);

    s.update_prompt(
        &p.id,
        &PromptUpdate {
            text: Some("A robot arm in a warehouse".into()),
            ..Default::default()
        },
    )
    .await?;
    assert!(
        hit_names(&s, "kitchen").await?.is_empty(),
        "old text must leave the index"
    );
    assert_eq!(hit_names(&s, "warehouse").await?, ["arm"]);

    s.delete_prompt(&p.id, false).await?;
    assert!(hit_names(&s, "warehouse").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn name_matches_rank_above_text_matches() -> TestResult {
    let (_d, s) = store().await?;
    s.create_prompt(&new_prompt(
        "a long description that mentions fog once among many other words here",
        PromptName::Exact("misc".into()),
        None,
    ))
    .await?;
    s.create_prompt(&new_prompt(
        "a quiet pier",
        PromptName::Exact("fog".into()),
        None,
    ))
    .await?;
    assert_eq!(hit_names(&s, "fog").await?, ["fog", "misc"]);
    Ok(())
}

#[tokio::test]
async fn malformed_queries_are_errors_not_crashes() -> TestResult {
    let (_d, s) = store().await?;
    for q in ["\"unterminated", "(a OR", "   ", "NOT fog", "name:"] {
        let err = s.search_prompts(q, 5, ("[", "]")).await.unwrap_err();
        assert!(matches!(err, StoreError::BadQuery { .. }), "{q}: {err}");
    }
    Ok(())
}

#[tokio::test]
async fn plain_words_are_literal_and_operators_apply_where_written() -> TestResult {
    let (_d, s) = store().await?;
    for (text, name) in [
        (
            "a robot arm in a bright kitchen, it's raining",
            "robot-arm-kitchen",
        ),
        ("a robot dog in a warehouse and fog", "dog-warehouse"),
        ("fog over a quiet harbour", "fog-harbour"),
    ] {
        s.create_prompt(&new_prompt(text, PromptName::Exact(name.into()), None))
            .await?;
    }
    // Stray operators, hyphens, apostrophes and unknown `field:` words are plain words.
    assert_eq!(hit_names(&s, "robot-arm").await?, ["robot-arm-kitchen"]);
    assert_eq!(hit_names(&s, "it's").await?, ["robot-arm-kitchen"]);
    assert_eq!(hit_names(&s, "robot AND").await?, ["dog-warehouse"]);
    assert_eq!(hit_names(&s, "foo:bar").await?, Vec::<String>::new());
    // Field filters, prefixes and groups still work where written.
    assert_eq!(hit_names(&s, "name:fog").await?, ["fog-harbour"]);
    assert_eq!(
        hit_names(&s, "(kitchen OR harbour) NOT name:fog*").await?,
        ["robot-arm-kitchen"]
    );
    Ok(())
}

#[tokio::test]
async fn id_prefixes_use_ranges_not_patterns() -> TestResult {
    let (_d, s) = store().await?;
    let p = s
        .create_prompt(&new_prompt("x", PromptName::Exact("p".into()), None))
        .await?;
    let full = p.id.to_string();
    assert_eq!(
        s.ids_with_prefix(IdKind::Prompt, &full[..8], 5).await?,
        [full]
    );
    assert!(
        s.ids_with_prefix(IdKind::Prompt, "ps_%", 5)
            .await?
            .is_empty(),
        "LIKE wildcards must not match"
    );
    assert!(s.ids_with_prefix(IdKind::Run, "rs_", 5).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn deletes_refuse_dependents_unless_forced() -> TestResult {
    let (_d, s) = store().await?;
    let set = common::input_set("scene");
    s.insert_input_set(&set).await?;
    let p = s
        .create_prompt(&new_prompt("x", PromptName::Exact("p".into()), Some(&set)))
        .await?;
    s.create_run(&new_run(&p.id)).await?;
    s.create_run(&new_run(&p.id)).await?;

    let err = s.delete_prompt(&p.id, false).await.unwrap_err();
    assert!(err.to_string().contains("used by 2 runs"), "{err}");
    let err = s.delete_input_set(&set.id, false).await.unwrap_err();
    assert!(err.to_string().contains("used by 1 prompt"), "{err}");

    assert_eq!(s.delete_input_set(&set.id, true).await?, 1);
    assert_eq!(
        s.prompt(&p.id).await?.input_set_id,
        None,
        "prompt detached, not deleted"
    );
    assert_eq!(s.delete_prompt(&p.id, true).await?, 2);
    assert!(
        s.list_runs(&RunFilter {
            limit: 10,
            ..Default::default()
        })
        .await?
        .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn transitions_are_guarded_by_the_expected_state() -> TestResult {
    let (_d, s) = store().await?;
    let p = s
        .create_prompt(&new_prompt("x", PromptName::Exact("p".into()), None))
        .await?;
    let run = s.create_run(&new_run(&p.id)).await?;
    assert_eq!(run.status, RunStatus::Queued);

    s.transition(&run.id, RunStatus::Queued, RunStatus::Staging, "staging")
        .await?;
    let err = s
        .transition(&run.id, RunStatus::Queued, RunStatus::Staging, "again")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                actual: RunStatus::Staging,
                ..
            }
        ),
        "{err}"
    );
    let err = s
        .transition(&run.id, RunStatus::Staging, RunStatus::Succeeded, "skip")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::IllegalTransition { .. }), "{err}");
    s.transition(
        &run.id,
        RunStatus::Staging,
        RunStatus::Failed,
        "host unreachable",
    )
    .await?;

    let run = s.run(&run.id).await?;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.failure_reason.as_deref(), Some("host unreachable"));
    assert!(run.started_at.is_some() && run.finished_at.is_some());
    let stages: Vec<RunStatus> = s
        .run_events(&run.id)
        .await?
        .into_iter()
        .map(|e| e.stage)
        .collect();
    assert_eq!(
        stages,
        [RunStatus::Queued, RunStatus::Staging, RunStatus::Failed]
    );
    Ok(())
}

#[tokio::test]
async fn run_filters_combine() -> TestResult {
    let (_d, s) = store().await?;
    let a = s
        .create_prompt(&new_prompt("x", PromptName::Exact("a".into()), None))
        .await?;
    let b = s
        .create_prompt(&new_prompt("y", PromptName::Exact("b".into()), None))
        .await?;
    let r1 = s.create_run(&new_run(&a.id)).await?;
    s.create_run(&new_run(&b.id)).await?;
    s.transition(&r1.id, RunStatus::Queued, RunStatus::Cancelled, "user")
        .await?;
    let list = |statuses: Vec<RunStatus>, prompt_id: Option<PromptId>| RunFilter {
        statuses,
        prompt_id,
        since: None,
        limit: 10,
        ..Default::default()
    };
    assert_eq!(s.list_runs(&list(vec![], None)).await?.len(), 2);
    assert_eq!(
        s.list_runs(&list(vec![RunStatus::Cancelled], None))
            .await?
            .len(),
        1
    );
    assert_eq!(
        s.list_runs(&list(vec![RunStatus::Queued], Some(a.id.clone())))
            .await?
            .len(),
        0
    );
    let only_b = s.list_runs(&list(vec![], Some(b.id.clone()))).await?;
    assert_eq!(only_b[0].prompt_name, "b");
    let future = RunFilter {
        since: Some(Utc::now() + chrono::Duration::hours(1)),
        limit: 10,
        ..Default::default()
    };
    assert!(s.list_runs(&future).await?.is_empty());
    Ok(())
}
