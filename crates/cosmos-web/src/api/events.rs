//! `GET /api/v1/events`: a WebSocket that sends a snapshot (the queue, running runs,
//! targets) and then every event in sequence order, or, with `since=N`, every event after N
//! (a reconnect loses and repeats nothing). Idle connections get heartbeats; a client more
//! than its buffer behind is told to resync and closed, so it never holds anyone up.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use cosmos_core::RunEvent;
use cosmos_engine::StatusView;

use crate::AppState;
use crate::error::extract::Query;
use crate::error::{ApiError, ErrorBody};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// Events read from the store at a time while a client catches up.
const PAGE: u32 = 500;
/// Queued runs a snapshot lists.
const SNAPSHOT_QUEUE: u32 = 200;
/// The close code a lagging client gets: reconnect with `since`.
const CLOSE_RESYNC: u16 = 4000;
/// The close code for a server going away.
const CLOSE_GOING_AWAY: u16 = 1001;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Resume after this sequence number (the `seq` of the last message handled): no
    /// snapshot, every event since
    #[param(minimum = 0)]
    since: Option<i64>,
}

/// What the server sends on the socket, one JSON text message each.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ServerMessage {
    /// The state now; events after `seq` follow.
    Snapshot { seq: i64, status: Box<StatusView> },
    /// One event; `seq` is its global sequence number.
    Event { seq: i64, event: RunEvent },
    /// Nothing happened for a while; `seq` is the last sequence number sent.
    Heartbeat { seq: i64 },
    /// The client fell too far behind: reconnect with `since=seq` (the socket closes).
    Resync { seq: i64, reason: String },
}

/// Live events over a WebSocket (messages: `ServerMessage`).
#[utoipa::path(get, path = "/events", tag = "events", params(EventsQuery),
    responses(
        (status = 101, description = "Switching to a WebSocket; each message is a ServerMessage"),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 426, description = "Not a WebSocket request", body = ErrorBody),
    ))]
async fn events(
    State(s): State<AppState>,
    Query(q): Query<EventsQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if q.since.is_some_and(|n| n < 0) {
        return ApiError::bad_request("invalid_since", "`since` is a sequence number, 0 or more")
            .into_response();
    }
    let Ok(ws) = ws else {
        return ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            "this route is a WebSocket: connect with a WebSocket client",
        )
        .into_response();
    };
    ws.on_upgrade(move |socket| async move {
        if let Err(e) = session(socket, s, q.since).await {
            tracing::debug!("events: a client's session ended: {e}");
        }
    })
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("the socket failed: {0}")]
    Socket(#[from] axum::Error),
    #[error(transparent)]
    Engine(#[from] cosmos_engine::EngineError),
    #[error("encoding a message: {0}")]
    Json(#[from] serde_json::Error),
}

async fn send(socket: &mut WebSocket, message: &ServerMessage) -> Result<(), SessionError> {
    let text = serde_json::to_string(message)?;
    socket.send(Message::Text(text.into())).await?;
    Ok(())
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn session(
    mut socket: WebSocket,
    s: AppState,
    since: Option<i64>,
) -> Result<(), SessionError> {
    // Subscribed before catching up: whatever is published from now on arrives here, and
    // what was published before is in the store.
    let mut live = s.hub.subscribe();
    let mut last = match since {
        Some(n) => n,
        None => {
            let seq = s.services.events().head().await?;
            let status = s.services.queue().status(SNAPSHOT_QUEUE).await?;
            send(
                &mut socket,
                &ServerMessage::Snapshot {
                    seq,
                    status: Box::new(status),
                },
            )
            .await?;
            seq
        }
    };
    loop {
        let page = s.services.events().page(last, PAGE).await?;
        let Some(end) = page.last().map(|e| e.id) else {
            break;
        };
        for event in page {
            send(
                &mut socket,
                &ServerMessage::Event {
                    seq: event.id,
                    event,
                },
            )
            .await?;
        }
        last = end;
    }
    let mut stop = s.stop.clone();
    let mut beat = tokio::time::interval_at(
        tokio::time::Instant::now() + s.heartbeat,
        s.heartbeat.max(Duration::from_millis(10)),
    );
    loop {
        tokio::select! {
            _ = crate::stopped(&mut stop) => {
                close(&mut socket, CLOSE_GOING_AWAY, "the server is shutting down").await;
                return Ok(());
            }
            got = live.recv() => match got {
                Ok(e) if e.id <= last => {}
                Ok(e) => {
                    last = e.id;
                    send(&mut socket, &ServerMessage::Event { seq: e.id, event: (*e).clone() }).await?;
                    beat.reset();
                }
                Err(RecvError::Lagged(_)) => {
                    let reason = format!("too far behind: reconnect with since={last}");
                    send(&mut socket, &ServerMessage::Resync { seq: last, reason }).await?;
                    close(&mut socket, CLOSE_RESYNC, "resync").await;
                    return Ok(());
                }
                Err(RecvError::Closed) => {
                    close(&mut socket, CLOSE_GOING_AWAY, "the server is shutting down").await;
                    return Ok(());
                }
            },
            _ = beat.tick() => send(&mut socket, &ServerMessage::Heartbeat { seq: last }).await?,
            incoming = socket.recv() => match incoming {
                // The client says nothing the server acts on; pings are answered for us.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
}
