//! `/api/v1/prompts`: create, list, show, edit, delete (with the CLI's rules), and search
//! with the CLI's query syntax.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use cosmos_core::Prompt;
use cosmos_engine::{
    AddedInputSet, CreatePromptRequest, EditPromptRequest, InputsRef, PromptDetail, PromptFilter,
};
use cosmos_store::PromptSummary;

use crate::AppState;
use crate::error::extract::{JsonBody, Path, Query};
use crate::error::{ApiError, ApiResult, ErrorBody};
use axum::Json;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(search))
        .routes(routes!(show, edit, delete))
        .routes(routes!(enhance))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only prompts of this input set (id or unique prefix)
    input_set: Option<String>,
    /// At most this many (1–1000, default 100)
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

fn limit(given: Option<u32>, default: u32, max: u32) -> ApiResult<u32> {
    let n = given.unwrap_or(default);
    if (1..=max).contains(&n) {
        Ok(n)
    } else {
        Err(ApiError::bad_request(
            "invalid_limit",
            format!("`limit` is 1 to {max}, not {n}"),
        ))
    }
}

/// Prompts, newest first, each with its run count.
#[utoipa::path(get, path = "/prompts", tag = "prompts", params(ListQuery),
    responses(
        (status = 200, description = "Prompts", body = Vec<PromptSummary>),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 404, description = "No such input set", body = ErrorBody),
    ))]
async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<PromptSummary>>> {
    let input_set_id = match &q.input_set {
        Some(i) => Some(s.services.inputs().resolve(i).await?),
        None => None,
    };
    let filter = PromptFilter {
        input_set_id,
        limit: limit(q.limit, 100, 1000)?,
        ..Default::default()
    };
    Ok(Json(s.services.prompts().list(&filter).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreatePromptBody {
    /// What the video should show.
    text: String,
    negative: Option<String>,
    name: Option<String>,
    /// An input set id, or a folder of control videos on the server's machine.
    inputs: Option<String>,
    /// A new prompt even when an identical one exists (otherwise that one is returned).
    #[serde(default)]
    new: bool,
    /// The model its runs use when they name none (`transfer1`, `transfer2.5`).
    model: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedPromptView {
    prompt: Prompt,
    /// An identical prompt existed and is returned.
    reused: bool,
    /// The input set registered on the way, when `inputs` named a new folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    input_set: Option<AddedInputSet>,
}

/// Creates a prompt (or returns the identical one).
#[utoipa::path(post, path = "/prompts", tag = "prompts", request_body = CreatePromptBody,
    responses(
        (status = 201, description = "Created", body = CreatedPromptView),
        (status = 200, description = "An identical prompt exists", body = CreatedPromptView),
        (status = 400, description = "Invalid text, name or inputs", body = ErrorBody),
        (status = 404, description = "No such input set", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
async fn create(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<CreatePromptBody>,
) -> ApiResult<(StatusCode, Json<CreatedPromptView>)> {
    let created = s
        .services
        .prompts()
        .create(&CreatePromptRequest {
            text: body.text,
            negative: body.negative,
            name: body.name,
            inputs: body.inputs.as_deref().map(InputsRef::parse),
            new: body.new,
            model: body.model,
        })
        .await?;
    let status = if created.reused {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(CreatedPromptView {
            prompt: created.prompt,
            reused: created.reused,
            input_set: created.added,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// The query, as `cosmos search` takes it: words, "phrases", prefix*, AND/OR/NOT
    q: String,
    /// At most this many hits (1–500, default 20)
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// A search hit with its best passage.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SearchHitView {
    prompt: Prompt,
    /// The passage as plain text.
    snippet: String,
    /// The passage as HTML: text escaped, matches in `<mark>`.
    snippet_html: String,
    /// Relevance (bm25): lower is better.
    rank: f64,
}

// Marks no prompt text contains: they become `<mark>` once the text is escaped.
const OPEN: &str = "\u{1}";
const CLOSE: &str = "\u{2}";

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Full-text search over prompt names and texts, best first.
#[utoipa::path(get, path = "/prompts/search", tag = "prompts", params(SearchQuery),
    responses(
        (status = 200, description = "Hits, best first", body = Vec<SearchHitView>),
        (status = 400, description = "The query is malformed", body = ErrorBody),
    ))]
async fn search(
    State(s): State<AppState>,
    uri: axum::http::Uri,
    Query(q): Query<SearchQuery>,
) -> ApiResult<axum::response::Response> {
    let key = uri.to_string();
    let body = s.cache.get(&key, hits(s.clone(), q)).await?;
    Ok(super::json_bytes(body))
}

async fn hits(s: AppState, q: SearchQuery) -> ApiResult<axum::body::Bytes> {
    let n = limit(q.limit, 20, 500)?;
    let hits = s.services.prompts().search(&q.q, n, (OPEN, CLOSE)).await?;
    super::to_bytes(
        &hits
            .into_iter()
            .map(|h| SearchHitView {
                snippet: h.snippet.replace(OPEN, "").replace(CLOSE, ""),
                snippet_html: escape_html(&h.snippet)
                    .replace(OPEN, "<mark>")
                    .replace(CLOSE, "</mark>"),
                prompt: h.prompt,
                rank: h.rank,
            })
            .collect::<Vec<_>>(),
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ShowQuery {
    /// Its newest runs to include (0–500, default 20)
    #[param(minimum = 0, maximum = 500)]
    runs: Option<u32>,
}

/// A prompt with its input set and newest runs.
#[utoipa::path(get, path = "/prompts/{id}", tag = "prompts",
    params(("id" = String, Path, description = "A prompt id, unique prefix or exact name"), ShowQuery),
    responses(
        (status = 200, description = "The prompt", body = PromptDetail),
        (status = 400, description = "Ambiguous or malformed", body = ErrorBody),
        (status = 404, description = "No such prompt", body = ErrorBody),
    ))]
async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> ApiResult<Json<PromptDetail>> {
    let runs = q.runs.unwrap_or(20);
    if runs > 500 {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "`runs` is at most 500",
        ));
    }
    let id = s.services.prompts().resolve(&id).await?;
    Ok(Json(s.services.prompts().detail(&id, runs).await?))
}

/// Where and when to run the prompt upsampler (every field optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnhanceBody {
    /// The target to run on (wherever a GPU slot is free when left out).
    target: Option<String>,
    /// Queue order: higher first.
    priority: Option<i32>,
}

/// Queues an enhance run: Cosmos's prompt upsampler rewrites the prompt on a target from the
/// first frames of its control video; the result becomes a child prompt (`enhanced` in the
/// prompt's detail) and the run's `model_prompt`.
#[utoipa::path(post, path = "/prompts/{id}/enhance", tag = "prompts", request_body = EnhanceBody,
    params(("id" = String, Path, description = "A prompt id, unique prefix or exact name")),
    responses(
        (status = 201, description = "The enhance run", body = cosmos_core::Run),
        (status = 400, description = "Ambiguous, or the prompt has no control video", body = ErrorBody),
        (status = 404, description = "No such prompt or target", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
async fn enhance(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EnhanceBody>,
) -> ApiResult<(StatusCode, Json<cosmos_core::Run>)> {
    let id = s.services.prompts().resolve(&id).await?;
    let run = s
        .services
        .prompts()
        .enhance(&cosmos_engine::EnhanceRequest {
            prompt: id.to_string(),
            target: body.target,
            priority: body.priority.unwrap_or(0),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(run)))
}

/// `null` and absent differ: `"inputs": null` detaches the input set, no `inputs` keeps it.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EditPromptBody {
    text: Option<String>,
    /// `""` clears the negative text.
    negative: Option<String>,
    name: Option<String>,
    /// An input set id or a folder on the server's machine; `null` detaches it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    inputs: Option<Option<String>>,
    /// The model its runs use when they name none; `""` clears it.
    model: Option<String>,
}

/// Changes a prompt's text, negative text, name, input set or model (runs keep what they ran).
#[utoipa::path(patch, path = "/prompts/{id}", tag = "prompts", request_body = EditPromptBody,
    params(("id" = String, Path, description = "A prompt id, unique prefix or exact name")),
    responses(
        (status = 200, description = "The prompt as it is now", body = Prompt),
        (status = 400, description = "Invalid change", body = ErrorBody),
        (status = 404, description = "No such prompt or input set", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ))]
async fn edit(
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EditPromptBody>,
) -> ApiResult<Json<Prompt>> {
    let id = s.services.prompts().resolve(&id).await?;
    let req = EditPromptRequest {
        text: body.text,
        negative: body.negative,
        name: body.name,
        inputs: body.inputs.map(|i| i.as_deref().map(InputsRef::parse)),
        model: body.model,
    };
    Ok(Json(s.services.prompts().edit(&id, &req).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteQuery {
    /// Also delete its runs (otherwise a prompt with runs is kept)
    force: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Deleted {
    /// Runs deleted with it.
    runs_deleted: u64,
}

/// Deletes a prompt; one with runs only with `force=true`.
#[utoipa::path(delete, path = "/prompts/{id}", tag = "prompts",
    params(("id" = String, Path, description = "A prompt id, unique prefix or exact name"), DeleteQuery),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 400, description = "Ambiguous or malformed", body = ErrorBody),
        (status = 404, description = "No such prompt", body = ErrorBody),
        (status = 409, description = "It has runs (pass force=true)", body = ErrorBody),
    ))]
async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Json<Deleted>> {
    let id = s.services.prompts().resolve(&id).await?;
    let n = s
        .services
        .prompts()
        .delete(&id, q.force.unwrap_or(false))
        .await?;
    Ok(Json(Deleted { runs_deleted: n }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn snippets_are_escaped_before_matches_are_marked() {
        let raw = format!("a <b>{}fog{} & rain", super::OPEN, super::CLOSE);
        let html = super::escape_html(&raw)
            .replace(super::OPEN, "<mark>")
            .replace(super::CLOSE, "</mark>");
        assert_eq!(html, "a &lt;b&gt;<mark>fog</mark> &amp; rain");
    }
}
