//! serverless: a stand-in for the Redshift Serverless API's `GetCredentials`, which moto
//! does not emulate. It answers the AWS SDK's own requests (the awsJson1_1 protocol: a
//! POST with `X-Amz-Target: RedshiftServerless.GetCredentials` and a JSON body) on a
//! loopback port, for one workgroup: the user it was given, a fresh password and an
//! expiration its lifetime from now; any other workgroup is Serverless's
//! `ResourceNotFoundException`. It counts the requests and keeps the last one, so a
//! test sees how often, and with what, the loader asked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};

/// What the stand-in answers with, and what it was asked.
#[derive(Debug)]
struct State {
    workgroup: String,
    user: String,
    lifetime: Duration,
    calls: AtomicUsize,
    last: Mutex<Option<serde_json::Value>>,
}

/// A running stand-in; it serves until the test process exits.
#[derive(Debug, Clone)]
pub struct Serverless {
    url: String,
    state: Arc<State>,
}

impl Serverless {
    /// Serves `GetCredentials` for `workgroup`, answering `user` with credentials that
    /// expire `lifetime` after each request.
    pub fn start(workgroup: &str, user: &str, lifetime: Duration) -> std::io::Result<Serverless> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(State {
            workgroup: workgroup.to_owned(),
            user: user.to_owned(),
            lifetime,
            calls: AtomicUsize::new(0),
            last: Mutex::new(None),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let serving = Arc::clone(&state);
        // A runtime of its own, so it answers whichever runtime the loader runs on.
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                while let Ok((stream, _)) = listener.accept().await {
                    let state = Arc::clone(&serving);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(
                            move |request: Request<hyper::body::Incoming>| {
                                let state = Arc::clone(&state);
                                async move {
                                    Ok::<_, std::convert::Infallible>(answer(&state, request).await)
                                }
                            },
                        );
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    });
                }
            });
        });
        Ok(Serverless { url, state })
    }

    /// The endpoint to give the SDK (`warehouse.endpoint_url`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many `GetCredentials` requests it has answered, for any workgroup.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The body of the last request.
    pub fn last_request(&self) -> Option<serde_json::Value> {
        self.state
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn answer(state: &State, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) => {
            return fault(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                &error.to_string(),
            );
        }
    };
    if target.as_deref() != Some("RedshiftServerless.GetCredentials") {
        return fault(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &format!("not emulated: {target:?}"),
        );
    }
    let Ok(asked) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return fault(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "not JSON",
        );
    };
    state.calls.fetch_add(1, Ordering::SeqCst);
    let workgroup = asked
        .get("workgroupName")
        .and_then(|name| name.as_str())
        .unwrap_or_default()
        .to_owned();
    *state.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(asked);
    if workgroup != state.workgroup {
        return fault(
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
            &format!("Workgroup {workgroup} is not found"),
        );
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let expiration = (now + state.lifetime).as_secs();
    let n = state.calls.load(Ordering::SeqCst);
    let credentials = serde_json::json!({
        "dbUser": state.user,
        "dbPassword": format!("temporary-{n}"),
        "expiration": expiration,
        "nextRefreshTime": expiration,
    });
    reply(StatusCode::OK, &credentials.to_string(), None)
}

/// An error as the awsJson1_1 protocol carries it: its code in `__type` and in the
/// `X-Amzn-Errortype` header.
fn fault(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    reply(status, &body, Some(code))
}

fn reply(status: StatusCode, body: &str, error_type: Option<&str>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Some(code) = error_type.and_then(|code| hyper::header::HeaderValue::from_str(code).ok())
    {
        headers.insert("x-amzn-errortype", code);
    }
    response
}
