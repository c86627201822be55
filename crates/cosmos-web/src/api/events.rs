//! `GET /api/v1/events`: a WebSocket that sends a snapshot (the queue, running runs,
//! targets) and then every event in sequence order, or, with `since=N`, every event after N
//! (a reconnect loses and repeats nothing). Idle connections get heartbeats; a client more
//! than its buffer behind is told to resync and closed, so it never holds anyone up.
//! Clients without WebSocket ask with `Accept: text/event-stream` and get the same messages
//! as server-sent events (each `id:` its sequence number; `Last-Event-ID` resumes).

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
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

/// Live events over a WebSocket (messages: `ServerMessage`); with `Accept:
/// text/event-stream`, the same messages as server-sent events.
#[utoipa::path(get, path = "/events", tag = "events", params(EventsQuery),
    responses(
        (status = 101, description = "Switching to a WebSocket; each message is a ServerMessage"),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 426, description = "Not a WebSocket request", body = ErrorBody),
    ))]
async fn events(
    State(s): State<AppState>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if q.since.is_some_and(|n| n < 0) {
        return ApiError::bad_request("invalid_since", "`since` is a sequence number, 0 or more")
            .into_response();
    }
    let Ok(ws) = ws else {
        let wants_stream = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream"));
        if wants_stream {
            // `Last-Event-ID` is how an EventSource resumes; `since` works too.
            let resume = headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0);
            return event_stream(s, q.since.or(resume));
        }
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

/// The events as server-sent events: the session writes into a pipe the body reads from.
fn event_stream(s: AppState, since: Option<i64>) -> Response {
    let (writer, reader) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Err(e) = session(EventStream(writer), s, since).await {
            tracing::debug!("events: a stream ended: {e}");
        }
    });
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("the socket failed: {0}")]
    Socket(#[from] axum::Error),
    #[error(transparent)]
    Engine(#[from] cosmos_engine::EngineError),
    #[error("encoding a message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the event stream failed: {0}")]
    Stream(#[from] std::io::Error),
}

/// Where a session's messages go: a WebSocket, or a stream of server-sent events.
trait Channel {
    async fn send(&mut self, message: &ServerMessage) -> Result<(), SessionError>;
    /// Says why the server ends the session (best effort: the client may be gone).
    async fn close(&mut self, code: u16, reason: &str);
    /// Resolves when the client has gone or said goodbye.
    async fn gone(&mut self);
}

impl Channel for WebSocket {
    async fn send(&mut self, message: &ServerMessage) -> Result<(), SessionError> {
        let text = serde_json::to_string(message)?;
        WebSocket::send(self, Message::Text(text.into())).await?;
        Ok(())
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = WebSocket::send(self, Message::Close(Some(frame))).await;
    }

    async fn gone(&mut self) {
        loop {
            match self.recv().await {
                // The client says nothing the server acts on; pings are answered for us.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Server-sent events written into the response body's pipe: a client that stops reading
/// fills it, and the session lags like a slow WebSocket.
struct EventStream(tokio::io::DuplexStream);

impl Channel for EventStream {
    async fn send(&mut self, message: &ServerMessage) -> Result<(), SessionError> {
        use tokio::io::AsyncWriteExt;
        let data = serde_json::to_string(message)?;
        let frame = match message {
            ServerMessage::Snapshot { seq, .. } | ServerMessage::Event { seq, .. } => {
                format!("id: {seq}\ndata: {data}\n\n")
            }
            _ => format!("data: {data}\n\n"),
        };
        self.0.write_all(frame.as_bytes()).await?;
        Ok(())
    }

    async fn close(&mut self, code: u16, reason: &str) {
        use tokio::io::AsyncWriteExt;
        let data = serde_json::json!({"type": "close", "code": code, "reason": reason});
        let _ = self
            .0
            .write_all(format!("data: {data}\n\n").as_bytes())
            .await;
        let _ = self.0.shutdown().await;
    }

    async fn gone(&mut self) {
        // A client that leaves drops the body: the next write fails.
        std::future::pending::<()>().await;
    }
}

async fn session(
    mut socket: impl Channel,
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
            socket
                .send(&ServerMessage::Snapshot {
                    seq,
                    status: Box::new(status),
                })
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
            socket
                .send(&ServerMessage::Event {
                    seq: event.id,
                    event,
                })
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
                socket.close(CLOSE_GOING_AWAY, "the server is shutting down").await;
                return Ok(());
            }
            got = live.recv() => match got {
                Ok(e) if e.id <= last => {}
                Ok(e) => {
                    last = e.id;
                    socket.send(&ServerMessage::Event { seq: e.id, event: (*e).clone() }).await?;
                    beat.reset();
                }
                Err(RecvError::Lagged(_)) => {
                    let reason = format!("too far behind: reconnect with since={last}");
                    socket.send(&ServerMessage::Resync { seq: last, reason }).await?;
                    socket.close(CLOSE_RESYNC, "resync").await;
                    return Ok(());
                }
                Err(RecvError::Closed) => {
                    socket.close(CLOSE_GOING_AWAY, "the server is shutting down").await;
                    return Ok(());
                }
            },
            _ = beat.tick() => socket.send(&ServerMessage::Heartbeat { seq: last }).await?,
            _ = socket.gone() => return Ok(()),
        }
    }
}
