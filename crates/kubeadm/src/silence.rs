//! Alertmanager silences (API v2) for the alerts a disruption causes itself:
//! `POST /api/v2/silences` creates one, `DELETE /api/v2/silence/{id}`
//! expires it. Every call has a deadline; a silence is expired only when it
//! is ours (its `createdBy` is our identity and its comment carries our
//! mark), otherwise refused, naming what was found. The matchers come from
//! the policy's `silence:` section ([`hacore::silence`]), which already
//! refused any that would mute an alert the `alerts` rule gates on.

use std::time::Duration;

use hacore::silence::{Matcher, SilenceSpec};
use serde_json::json;

/// The mark every silence we create carries in its comment.
pub const MARK: &str = "[hacli ";

/// What went wrong with Alertmanager. Messages name the URL without its
/// credentials.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    /// A bad Alertmanager URL.
    #[error("alertmanager URL `{url}`: {reason}")]
    BadUrl {
        /// The URL, redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// A request failed or was answered with an error.
    #[error("{what}: {reason}")]
    Request {
        /// Method and URL, redacted.
        what: String,
        /// Why.
        reason: String,
    },
    /// A request did not finish before its deadline.
    #[error("{what}: no answer within {ms} ms")]
    Timeout {
        /// Method and URL, redacted.
        what: String,
        /// The deadline.
        ms: u128,
    },
    /// The silence is not ours: not expired.
    #[error(
        "silence {id} is not ours (created by `{created_by}`, comment `{comment}`): not expired"
    )]
    NotOurs {
        /// Its id.
        id: String,
        /// Its `createdBy`.
        created_by: String,
        /// Its comment.
        comment: String,
    },
}

/// An Alertmanager, by base URL (e.g. `http://127.0.0.1:9093`).
#[derive(Debug, Clone)]
pub struct Alertmanager {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
}

/// What [`Alertmanager::expire`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// It was active (or pending) and is expired now.
    Now,
    /// It had already expired: nothing to do.
    Already,
}

impl Alertmanager {
    /// An Alertmanager at `url` (http or https; TLS verification on), each
    /// call bounded by `timeout`. Nothing is contacted yet.
    pub fn new(url: &str, timeout: Duration) -> Result<Alertmanager, SilenceError> {
        let shown = crate::redact_url(url).into_owned();
        let parsed = url.parse::<http::Uri>().map_err(|e| SilenceError::BadUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(SilenceError::BadUrl {
                url: shown,
                reason: "give http://HOST:PORT or https://HOST:PORT".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| SilenceError::BadUrl {
                url: shown,
                reason: crate::redact_urls_in(&e.to_string()).into_owned(),
            })?;
        Ok(Alertmanager {
            base: url.trim_end_matches('/').to_string(),
            http,
            timeout,
        })
    }

    fn what(&self, method: &str, path: &str) -> String {
        format!(
            "{method} {}",
            crate::redact_url(&format!("{}{path}", self.base))
        )
    }

    async fn call(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, String), SilenceError> {
        let send = async {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let body = resp.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        };
        match tokio::time::timeout(self.timeout, send).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(SilenceError::Request {
                what: what.to_string(),
                reason: crate::redact_urls_in(&crate::observe::describe(&e)).into_owned(),
            }),
            Err(_) => Err(SilenceError::Timeout {
                what: what.to_string(),
                ms: self.timeout.as_millis(),
            }),
        }
    }

    /// Create a silence from now until `ends_at`; returns its id.
    pub async fn create(
        &self,
        matchers: &[Matcher],
        ends_at: jiff::Timestamp,
        created_by: &str,
        comment: &str,
    ) -> Result<String, SilenceError> {
        let path = "/api/v2/silences";
        let what = self.what("POST", path);
        let body = json!({
            "matchers": matchers,
            "startsAt": jiff::Timestamp::now().to_string(),
            "endsAt": ends_at.to_string(),
            "createdBy": created_by,
            "comment": comment,
        });
        let (status, text) = self
            .call(
                &what,
                self.http.post(format!("{}{path}", self.base)).json(&body),
            )
            .await?;
        if status != 200 {
            return Err(SilenceError::Request {
                what,
                reason: format!("HTTP {status}: {}", text.trim()),
            });
        }
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| SilenceError::Request {
                what: what.clone(),
                reason: format!("the answer is not JSON: {e}"),
            })?;
        v["silenceID"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| SilenceError::Request {
                what,
                reason: format!("no silenceID in the answer: {}", text.trim()),
            })
    }

    /// Read one silence (its JSON), or None when Alertmanager knows no such id.
    pub async fn get(&self, id: &str) -> Result<Option<serde_json::Value>, SilenceError> {
        let path = format!("/api/v2/silence/{id}");
        let what = self.what("GET", &path);
        let (status, text) = self
            .call(&what, self.http.get(format!("{}{path}", self.base)))
            .await?;
        match status {
            200 => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| SilenceError::Request {
                    what,
                    reason: format!("the answer is not JSON: {e}"),
                }),
            404 => Ok(None),
            s => Err(SilenceError::Request {
                what,
                reason: format!("HTTP {s}: {}", text.trim()),
            }),
        }
    }

    /// Expire silence `id` if it is ours (created by `created_by`, with our
    /// mark); already expired (or gone): says so.
    pub async fn expire(&self, id: &str, created_by: &str) -> Result<Expired, SilenceError> {
        let Some(s) = self.get(id).await? else {
            return Ok(Expired::Already);
        };
        let by = s["createdBy"].as_str().unwrap_or("");
        let comment = s["comment"].as_str().unwrap_or("");
        if by != created_by || !comment.contains(MARK) {
            return Err(SilenceError::NotOurs {
                id: id.to_string(),
                created_by: by.to_string(),
                comment: comment.to_string(),
            });
        }
        if s["status"]["state"] == "expired" {
            return Ok(Expired::Already);
        }
        let path = format!("/api/v2/silence/{id}");
        let what = self.what("DELETE", &path);
        let (status, text) = self
            .call(&what, self.http.delete(format!("{}{path}", self.base)))
            .await?;
        match status {
            200 => Ok(Expired::Now),
            404 => Ok(Expired::Already),
            s => Err(SilenceError::Request {
                what,
                reason: format!("HTTP {s}: {}", text.trim()),
            }),
        }
    }
}

/// One run's silences, one per disrupted node.
#[derive(Debug)]
pub struct RunSilences {
    am: Alertmanager,
    created_by: String,
    /// (node, silence id).
    pub silences: Vec<(String, String)>,
}

impl RunSilences {
    /// Create a silence for each of `nodes`, from now until `ends_at`,
    /// created by `created_by` (the run's lock identity), the comment
    /// naming `what` the run is. If one cannot be created, those already
    /// created are expired and the error returned.
    pub async fn create(
        am: Alertmanager,
        spec: &SilenceSpec,
        nodes: &[String],
        created_by: &str,
        what: &str,
        ends_at: jiff::Timestamp,
    ) -> Result<RunSilences, SilenceError> {
        let mut run = RunSilences {
            am,
            created_by: created_by.to_string(),
            silences: Vec::new(),
        };
        for node in nodes {
            let comment = format!(
                "{}{MARK}{what} {node}]",
                spec.comment
                    .as_deref()
                    .map(|c| format!("{c} "))
                    .unwrap_or_default()
            );
            match run
                .am
                .create(&spec.for_node(node), ends_at, created_by, &comment)
                .await
            {
                Ok(id) => run.silences.push((node.clone(), id)),
                Err(e) => {
                    let _ = run.expire_all().await;
                    return Err(e);
                }
            }
        }
        Ok(run)
    }

    /// Expire every silence of the run; one line per silence saying what
    /// became of it (expired, already expired, or the error).
    pub async fn expire_all(&self) -> Vec<Result<String, String>> {
        let mut out = Vec::new();
        for (node, id) in &self.silences {
            out.push(match self.am.expire(id, &self.created_by).await {
                Ok(Expired::Now) => Ok(format!("silence {id} for {node} expired")),
                Ok(Expired::Already) => Ok(format!("silence {id} for {node} was already expired")),
                Err(e) => Err(format!("silence {id} for {node}: {e}")),
            });
        }
        out
    }
}
