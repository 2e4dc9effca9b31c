//! The reference point: the smallest useful axum service (one JSON route that reads the request
//! body and answers a constant object), run as a child process of the bench binary on the same
//! tokio defaults as callgate, so both are measured the same way from outside.

use anyhow::{Context, Result};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use serde_json::{Value, json};
use std::net::SocketAddr;

/// The route the load generator posts to.
pub const PATH: &str = "/hello";

/// Serves until killed; prints `hello-server listening on http://ADDR` once bound.
pub fn serve(bind: SocketAddr) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen on {bind}"))?;
        let addr = listener.local_addr()?;
        println!("hello-server listening on http://{addr}");
        let app = Router::new().route(PATH, post(hello));
        axum::serve(listener, app)
            .await
            .context("hello server failed")
    })
}

async fn hello(body: Bytes) -> Json<Value> {
    Json(json!({"message": "hello, world", "received_bytes": body.len()}))
}
