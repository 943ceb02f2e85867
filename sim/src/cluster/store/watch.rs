//! Watch streams: replay from history (or synthetic ADDED events for the current state),
//! then live changes from the broadcast, filtered by namespace and selectors, with periodic
//! bookmarks and a timeout. A watch resuming from a compacted version receives a single
//! ERROR event with a 410 `Expired` Status, as the apiserver sends it.

use super::list::Filter;
use super::{Change, ChangeKind, Store, present};
use crate::cluster::error::{Error, Result};
use crate::cluster::resources::{GroupResource, Gvr};
use crate::cluster::store::WatchParams;
use futures::Stream;
use serde_json::{Value, json};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// One event on a watch stream, serialised as `{"type": ..., "object": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    pub kind: &'static str,
    pub object: Value,
}

impl WatchEvent {
    /// The event's line on a JSON watch stream, encoded without copying the object (once per
    /// watcher and event, so with 100 watchers a copy was 100 copies).
    pub(crate) fn to_line(&self) -> String {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            // In the order `json!` (a sorted map) writes them.
            object: &'a Value,
            #[serde(rename = "type")]
            kind: &'a str,
        }
        let mut line = serde_json::to_string(&Line { object: &self.object, kind: self.kind })
            .expect("JSON values always serialise");
        line.push('\n');
        line
    }
}

/// A running watch; ends on timeout, when it falls too far behind, or when dropped.
pub struct WatchStream {
    rx: mpsc::Receiver<WatchEvent>,
}

impl Stream for WatchStream {
    type Item = WatchEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        self.rx.poll_recv(cx)
    }
}

const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

impl Store {
    pub fn watch(&self, gvr: &Gvr, namespace: Option<&str>, params: WatchParams) -> Result<WatchStream> {
        let (tx, rx) = mpsc::channel(256);
        let inner = self.lock();
        let info = inner.resource(gvr)?;
        let filter = Filter::new(&info, namespace, params.label_selector.as_deref(), params.field_selector.as_deref())?;
        let gr = info.storage_resource();
        let changes = self.0.changes.subscribe();
        let start_rv = inner.rv;
        let requested: Option<u64> = match params.resource_version.as_deref().filter(|v| !v.is_empty() && *v != "0") {
            Some(v) => Some(v.parse().map_err(|_| Error::BadRequest(format!("invalid resource version: {v}")))?),
            None => None,
        };
        let mut initial = Vec::new();
        match requested {
            Some(rv) if !params.send_initial_events => {
                if rv < inner.compacted {
                    let status =
                        Error::Gone(format!("too old resource version: {rv} ({})", inner.compacted + 1)).to_status();
                    initial.push(WatchEvent { kind: "ERROR", object: status });
                    drop(inner);
                    tokio::spawn(async move {
                        let _ = tx.send(initial.remove(0)).await;
                    });
                    return Ok(WatchStream { rx });
                }
                let from = inner.history.partition_point(|c| c.rv <= rv);
                for change in inner.history.range(from..) {
                    if change.resource == gr
                        && let Some(ev) = translate(change, &filter, gvr)
                    {
                        initial.push(ev);
                    }
                }
            }
            _ => {
                for obj in inner.table(&gr).values() {
                    if filter.matches(obj) {
                        initial.push(WatchEvent { kind: "ADDED", object: present(obj, gvr) });
                    }
                }
                if params.send_initial_events {
                    let mut end = bookmark(gvr, &info.kind, start_rv);
                    end["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                    initial.push(WatchEvent { kind: "BOOKMARK", object: end });
                }
            }
        }
        let kind = info.kind.clone();
        drop(inner);
        let pump = Pump { gvr: gvr.clone(), kind, gr, filter, tx, last_rv: start_rv };
        tokio::spawn(pump.run(initial, changes, params));
        Ok(WatchStream { rx })
    }
}

struct Pump {
    gvr: Gvr,
    kind: String,
    gr: GroupResource,
    filter: Filter,
    tx: mpsc::Sender<WatchEvent>,
    /// Every change up to this version has been considered, so a bookmark may carry it.
    last_rv: u64,
}

impl Pump {
    async fn run(
        mut self,
        initial: Vec<WatchEvent>,
        mut changes: broadcast::Receiver<Arc<Change>>,
        params: WatchParams,
    ) {
        for ev in initial {
            if self.tx.send(ev).await.is_err() {
                return;
            }
        }
        let start_rv = self.last_rv;
        let interval = params.bookmark_interval.unwrap_or(DEFAULT_BOOKMARK_INTERVAL);
        let mut bookmarks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let deadline = params.timeout.map(|t| tokio::time::Instant::now() + t);
        let timeout = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timeout);
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(change) if change.rv > start_rv => {
                        self.last_rv = change.rv;
                        if change.resource == self.gr
                            && let Some(ev) = translate(&change, &self.filter, &self.gvr)
                            && self.tx.send(ev).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Too slow, or the store is gone: end the stream; the client resumes.
                    Err(_) => return,
                },
                _ = bookmarks.tick(), if params.allow_bookmarks => {
                    let bm = WatchEvent { kind: "BOOKMARK", object: bookmark(&self.gvr, &self.kind, self.last_rv) };
                    if self.tx.send(bm).await.is_err() {
                        return;
                    }
                }
                _ = &mut timeout => {
                    if params.allow_bookmarks {
                        let bm = WatchEvent { kind: "BOOKMARK", object: bookmark(&self.gvr, &self.kind, self.last_rv) };
                        let _ = self.tx.send(bm).await;
                    }
                    return;
                }
                _ = self.tx.closed() => return,
            }
        }
    }
}

fn bookmark(gvr: &Gvr, kind: &str, rv: u64) -> Value {
    json!({"kind": kind, "apiVersion": gvr.api_version(), "metadata": {"resourceVersion": rv.to_string()}})
}

/// The event a filtered watch sees for a change: an object entering the selection is
/// ADDED, one leaving it is DELETED.
fn translate(change: &Change, filter: &Filter, gvr: &Gvr) -> Option<WatchEvent> {
    let now = filter.matches(&change.object);
    let kind = match change.kind {
        ChangeKind::Added => now.then_some("ADDED")?,
        ChangeKind::Deleted => now.then_some("DELETED")?,
        ChangeKind::Modified => {
            let before = change.previous.as_deref().is_some_and(|p| filter.matches(p));
            match (before, now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            }
        }
    };
    Some(WatchEvent { kind, object: present(&change.object, gvr) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_event_object_serialised() {
        let object =
            json!({"kind": "ConfigMap", "metadata": {"name": "w", "resourceVersion": "3"}, "data": {"t": "1"}});
        let ev = WatchEvent { kind: "MODIFIED", object: object.clone() };
        assert_eq!(ev.to_line(), format!("{}\n", json!({"type": "MODIFIED", "object": object})));
    }
}
