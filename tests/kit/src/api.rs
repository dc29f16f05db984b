//! The operator API's client: real HTTP requests (ureq) to a test's server.

use std::time::Duration;

pub use serde_json::Value;

/// An answer of the API: its status and its body as JSON (`Null` when it has none).
#[derive(Debug, Clone)]
pub struct ApiAnswer {
    pub status: u16,
    pub body: Value,
    /// The body as it came.
    pub text: String,
}

/// Calls `method path` on the API at `port`, with `token` as a bearer token when given.
pub fn api_call(port: u16, method: &str, path: &str, token: Option<&str>) -> ApiAnswer {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let mut request = agent.request(method, &format!("http://127.0.0.1:{port}{path}"));
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let response = match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    ApiAnswer { status, body, text }
}

/// `GET path` on the API at `port`, without a token.
pub fn api_get(port: u16, path: &str) -> ApiAnswer {
    api_call(port, "GET", path, None)
}

/// Waits until the API at `port` shows stream `app`/`name` with its video and audio codecs. A
/// player that asks before they are known may be refused (an RTSP player's SDP would have
/// nothing to describe), so tests whose players must play start them after this.
pub fn wait_codecs(port: u16, app: &str, name: &str) {
    let known = crate::util::poll(Duration::from_secs(20), || {
        let answer = api_get(port, "/api/v1/streams");
        answer.body["streams"]
            .as_array()?
            .iter()
            .any(|s| {
                s["app"] == app
                    && s["name"] == name
                    && s["video"]["codec"].is_string()
                    && s["audio"]["codec"].is_string()
            })
            .then_some(())
    });
    assert!(
        known.is_some(),
        "the codecs of {app}/{name}: {}",
        api_get(port, "/api/v1/streams").text
    );
}

/// Runs schemathesis (Python's, every check) against the OpenAPI document of the API at
/// `port`, with `args` after it (`--include-path`, `--max-examples`, `--header`, ...),
/// bounded by `timeout`.
pub fn schemathesis(port: u16, args: &[&str], timeout: Duration) -> crate::process::Output {
    crate::process::run(
        "schemathesis",
        std::process::Command::new("python3")
            .args(["-m", "schemathesis.cli", "run"])
            .arg(format!("http://127.0.0.1:{port}/api/v1/openapi.json"))
            .args(["--checks", "all"])
            .args(args)
            .env("SCHEMATHESIS_HOOKS", ""),
        timeout,
    )
}
