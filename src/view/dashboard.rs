//! The read-only dashboard: an axum Router over the Kubernetes API. `GET /` lists the
//! experiments; `GET /experiments/{namespace}/{name}` shows one as the report does, and its inline
//! script replaces the content with `…/fragment` every few seconds; `GET /api/experiments/…` is
//! the Experiment as JSON. Only GETs: the dashboard never writes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use jiff::Timestamp;
use kube::Client;

use super::report::{STYLE, fragment};
use super::{Observed, observe, observe_all};

/// How often an experiment's page fetches its content again, in milliseconds.
pub const REFRESH_MS: u64 = 2000;

#[derive(Clone)]
struct Dashboard {
    client: Client,
    /// Only this namespace's experiments, when set.
    namespace: Option<String>,
}

/// The dashboard over `client`, showing the experiments of `namespace` (all when `None`).
pub fn router(client: Client, namespace: Option<String>) -> Router {
    Router::new()
        .route("/", get(list))
        .route("/experiments/{namespace}/{name}", get(page))
        .route("/experiments/{namespace}/{name}/fragment", get(content))
        .route("/api/experiments/{namespace}/{name}", get(json))
        .with_state(Dashboard { client, namespace })
}

/// Why a page cannot be shown.
enum Failure {
    NotFound(String),
    Api(kube::Error),
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found")).into_response(),
            Failure::Api(e) => (StatusCode::BAD_GATEWAY, format!("the Kubernetes API failed: {e}")).into_response(),
        }
    }
}

impl Dashboard {
    async fn one(&self, namespace: &str, name: &str) -> Result<Observed, Failure> {
        let missing = || Failure::NotFound(format!("Experiment {namespace}/{name}"));
        if self.namespace.as_deref().is_some_and(|only| only != namespace) {
            return Err(missing());
        }
        observe(&self.client, namespace, name).await.map_err(|e| match e {
            kube::Error::Api(status) if status.code == 404 => missing(),
            e => Failure::Api(e),
        })
    }
}

fn document(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{STYLE}</style></head><body>{body}</body></html>\n",
        text(title)
    ))
}

async fn list(State(dashboard): State<Dashboard>) -> Result<Html<String>, Failure> {
    let all = observe_all(&dashboard.client, dashboard.namespace.as_deref()).await.map_err(Failure::Api)?;
    let mut body = String::from(
        "<h1>Forklane experiments</h1><table id=\"experiments\"><tr><th>experiment</th><th>phase</th>\
         <th>weights</th><th>latest decision</th><th>winner</th></tr>",
    );
    for observed in &all {
        let status = observed.experiment.status.clone().unwrap_or_default();
        let (namespace, name) = (observed.namespace(), observed.name());
        let weights: Vec<String> = status.weights.iter().map(|w| format!("{} {}%", w.arm, w.desired)).collect();
        let decision = status
            .history
            .iter()
            .rev()
            .find_map(|l| Some(format!("{} at {}", l.outcome.as_deref()?, l.at)))
            .unwrap_or_else(|| "none yet".into());
        body += &format!(
            "<tr><td><a href=\"/experiments/{}/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            attr(&namespace),
            attr(&name),
            text(&format!("{namespace}/{name}")),
            status.phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "not started".into()),
            text(&weights.join(", ")),
            text(&decision),
            text(status.winner.as_deref().unwrap_or("–")),
        );
    }
    body += "</table>";
    if all.is_empty() {
        body += "<p>No experiments.</p>";
    }
    Ok(document("Forklane experiments", &body))
}

/// The script of an experiment's page: fetches the content again every `REFRESH_MS`, replaces
/// it, and counts the refreshes in `#refreshes` with the time of the last in `#refreshed`.
const LIVE: &str = "const main = document.getElementById('report');\
const count = document.getElementById('refreshes');\
const last = document.getElementById('refreshed');\
async function refresh() {\
  try {\
    const answer = await fetch(main.dataset.fragment, {cache: 'no-store'});\
    if (!answer.ok) { last.textContent = 'failed (' + answer.status + ')'; return; }\
    main.innerHTML = await answer.text();\
    count.textContent = String(Number(count.textContent) + 1);\
    last.textContent = new Date().toISOString();\
  } catch (e) { last.textContent = 'failed (' + e + ')'; }\
}\
setInterval(refresh, Number(main.dataset.every));";

async fn page(
    State(dashboard): State<Dashboard>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Html<String>, Failure> {
    let observed = dashboard.one(&namespace, &name).await?;
    let body = format!(
        "<p class=\"muted\"><a href=\"/\">All experiments</a> · live: refreshed <span id=\"refreshes\">0</span> \
         times, last at <time id=\"refreshed\">not yet</time></p>\
         <main id=\"report\" data-fragment=\"/experiments/{}/{}/fragment\" data-every=\"{REFRESH_MS}\">{}</main>\
         <script>{LIVE}</script>",
        attr(&namespace),
        attr(&name),
        fragment(&observed, Timestamp::now())
    );
    Ok(document(&format!("{namespace}/{name} · Forklane"), &body))
}

async fn content(
    State(dashboard): State<Dashboard>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Html<String>, Failure> {
    let observed = dashboard.one(&namespace, &name).await?;
    Ok(Html(fragment(&observed, Timestamp::now())))
}

async fn json(
    State(dashboard): State<Dashboard>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<forklane_core::api::Experiment>, Failure> {
    Ok(Json(dashboard.one(&namespace, &name).await?.experiment))
}
