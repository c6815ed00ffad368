//! Approvals: pending permission requests, daemon-wide. Each is asked once,
//! answered at most once (by the CLI, MCP, the web page or the API), denied
//! when its timeout passes, when the turn that asked goes away, and at
//! shutdown. Every request and every outcome is an event.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Events, lock};
use crate::model::{AgentName, Approval, ApprovalRequest, Event, Verdict};

/// How many answered ids are remembered, so a late second answer is told
/// "already answered" (409) rather than "no such approval" (404).
const REMEMBERED: usize = 1024;

/// Why an answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("no approval '{0}' is pending")]
    NotFound(String),
    #[error("approval '{0}' was already answered or has expired")]
    AlreadyResolved(String),
}

/// The daemon's approvals: a cheap, cloneable handle.
#[derive(Clone)]
pub struct Approvals {
    inner: Arc<Mutex<Inner>>,
    events: Events,
}

#[derive(Default)]
struct Inner {
    pending: BTreeMap<String, Pending>,
    /// Ids answered, expired or withdrawn, newest last.
    resolved: VecDeque<String>,
    /// Set by `deny_all`: the daemon is stopping, and what is asked from
    /// now on is denied at once with this reason, not left to wait.
    closed: Option<String>,
}

struct Pending {
    approval: Approval,
    answer: oneshot::Sender<Verdict>,
}

impl Approvals {
    pub fn new(events: Events) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            events,
        }
    }

    /// Asks a person; resolves with their answer, or a denial when `timeout`
    /// passes. Dropping the future (the turn went away) withdraws the
    /// request, reported as denied.
    pub async fn ask(
        &self,
        agent: &AgentName,
        request: ApprovalRequest,
        timeout: Duration,
    ) -> Verdict {
        self.ask_notify(agent, request, timeout, |_| {}).await
    }

    /// [`Self::ask`], telling `pending` the approval once it is listed (the
    /// engine relays it to the caller whose turn asked).
    pub async fn ask_notify(
        &self,
        agent: &AgentName,
        request: ApprovalRequest,
        timeout: Duration,
        pending: impl FnOnce(&Approval),
    ) -> Verdict {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut inner = lock(&self.inner);
            if let Some(reason) = &inner.closed {
                tracing::info!(agent = %agent, tool = %request.tool, "approval denied unasked: {reason}");
                return Verdict::deny(reason.clone());
            }
            let id = fresh_id(&inner);
            let approval = Approval {
                id: id.clone(),
                agent: agent.clone(),
                request,
                // The bus's clock: the request and its event agree.
                requested_at: self.events.clock().now_rfc3339(),
            };
            tracing::info!(agent = %agent, id = %id, tool = %approval.request.tool, "approval requested");
            self.events.emit(
                Some(agent),
                Event::ApprovalRequested {
                    approval: approval.clone(),
                },
            );
            pending(&approval);
            inner.pending.insert(
                id.clone(),
                Pending {
                    approval,
                    answer: tx,
                },
            );
            id
        };
        // Withdraws the request if this future is dropped before an answer.
        let guard = Withdraw {
            approvals: self,
            agent,
            id: &id,
        };
        let verdict = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(verdict)) => verdict,
            // The sender went: `deny_all` took it without answering.
            Ok(Err(_)) => Verdict::deny("the daemon is shutting down"),
            Err(_) => {
                let reason = format!(
                    "no answer within approval_timeout ({})",
                    crate::duration::format(timeout)
                );
                self.resolve(agent, &id, Verdict::deny(reason.clone()));
                Verdict::deny(reason)
            }
        };
        std::mem::forget(guard);
        verdict
    }

    /// The pending approvals, oldest first; only `agent`'s if given.
    pub fn list(&self, agent: Option<&AgentName>) -> Vec<Approval> {
        let inner = lock(&self.inner);
        let mut list: Vec<Approval> = inner
            .pending
            .values()
            .filter(|pending| agent.is_none_or(|name| &pending.approval.agent == name))
            .map(|pending| pending.approval.clone())
            .collect();
        list.sort_by(|a, b| a.requested_at.cmp(&b.requested_at));
        list
    }

    /// Answers a pending approval; a second answer is refused.
    pub fn answer(&self, id: &str, verdict: Verdict) -> Result<Approval, AnswerError> {
        let mut inner = lock(&self.inner);
        let Some(pending) = inner.pending.remove(id) else {
            return Err(if inner.resolved.iter().any(|seen| seen == id) {
                AnswerError::AlreadyResolved(id.to_owned())
            } else {
                AnswerError::NotFound(id.to_owned())
            });
        };
        remember(&mut inner, id);
        drop(inner);
        let approval = pending.approval;
        self.report(&approval.agent, id, &verdict);
        // The asker may have gone meanwhile; the answer is still recorded.
        let _ = pending.answer.send(verdict);
        Ok(approval)
    }

    /// Denies everything pending (the daemon is stopping): each asker is
    /// told, and each denial is an event. Whatever is asked afterwards is
    /// denied at once with the same reason.
    pub fn deny_all(&self, reason: &str) {
        let pending: Vec<Pending> = {
            let mut inner = lock(&self.inner);
            inner.closed = Some(reason.to_owned());
            let taken = std::mem::take(&mut inner.pending);
            for id in taken.keys() {
                remember(&mut inner, id);
            }
            taken.into_values().collect()
        };
        for pending in pending {
            let verdict = Verdict::deny(reason);
            self.report(&pending.approval.agent, &pending.approval.id, &verdict);
            let _ = pending.answer.send(verdict);
        }
    }

    /// Removes a still-pending approval with a denial (timeout, withdrawal).
    fn resolve(&self, agent: &AgentName, id: &str, verdict: Verdict) {
        let mut inner = lock(&self.inner);
        if inner.pending.remove(id).is_none() {
            return;
        }
        remember(&mut inner, id);
        drop(inner);
        self.report(agent, id, &verdict);
    }

    fn report(&self, agent: &AgentName, id: &str, verdict: &Verdict) {
        tracing::info!(agent = %agent, id, decision = ?verdict.decision, reason = verdict.reason.as_deref().unwrap_or(""), "approval resolved");
        self.events.emit(
            Some(agent),
            Event::ApprovalResolved {
                approval_id: id.to_owned(),
                decision: verdict.decision,
                reason: verdict.reason.clone(),
            },
        );
    }
}

/// Withdraws an approval whose asker went away before it was answered.
struct Withdraw<'a> {
    approvals: &'a Approvals,
    agent: &'a AgentName,
    id: &'a str,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        self.approvals.resolve(
            self.agent,
            self.id,
            Verdict::deny("the turn that asked ended first"),
        );
    }
}

fn remember(inner: &mut Inner, id: &str) {
    inner.resolved.push_back(id.to_owned());
    while inner.resolved.len() > REMEMBERED {
        inner.resolved.pop_front();
    }
}

/// Six hex digits, unique among pending and remembered ids: short enough to type.
fn fresh_id(inner: &Inner) -> String {
    loop {
        let id = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
        if !inner.pending.contains_key(&id) && !inner.resolved.contains(&id) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Decision;

    fn request() -> ApprovalRequest {
        ApprovalRequest {
            tool: "Bash".into(),
            summary: "touch made.txt".into(),
            input: serde_json::json!({"command": "touch made.txt"}),
            cwd: None,
        }
    }

    fn name() -> AgentName {
        AgentName::parse("coder").unwrap()
    }

    #[tokio::test]
    async fn an_approval_is_answered_once() {
        let approvals = Approvals::new(Events::new());
        let asker = approvals.clone();
        let waiting =
            tokio::spawn(
                async move { asker.ask(&name(), request(), Duration::from_secs(60)).await },
            );
        let id = loop {
            if let Some(first) = approvals.list(None).first() {
                break first.id.clone();
            }
            tokio::task::yield_now().await;
        };
        approvals.answer(&id, Verdict::approve()).unwrap();
        assert_eq!(waiting.await.unwrap().decision, Decision::Approve);
        assert_eq!(
            approvals.answer(&id, Verdict::deny("late")),
            Err(AnswerError::AlreadyResolved(id))
        );
        assert!(matches!(
            approvals.answer("nope", Verdict::approve()),
            Err(AnswerError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_request_is_dated_by_the_buses_clock() {
        let (clock, hand) = crate::model::Clock::adjustable();
        hand.advance(Duration::from_secs(86_400));
        let approvals = Approvals::new(Events::with_clock(clock.clone()));
        let asker = approvals.clone();
        let waiting =
            tokio::spawn(
                async move { asker.ask(&name(), request(), Duration::from_secs(60)).await },
            );
        let approval = loop {
            if let Some(first) = approvals.list(None).first() {
                break first.clone();
            }
            tokio::task::yield_now().await;
        };
        // A day ahead of the wall clock, as the bus's clock is.
        let wall = crate::model::now_rfc3339();
        assert!(approval.requested_at > wall, "{}", approval.requested_at);
        assert!(approval.requested_at <= clock.now_rfc3339());
        approvals.answer(&approval.id, Verdict::approve()).unwrap();
        waiting.await.unwrap();
    }

    #[tokio::test]
    async fn unanswered_approvals_are_denied_at_their_timeout_and_at_shutdown() {
        let approvals = Approvals::new(Events::new());
        let verdict = approvals
            .ask(&name(), request(), Duration::from_millis(10))
            .await;
        assert!(!verdict.approved());
        assert!(verdict.reason.unwrap().contains("approval_timeout"));
        assert!(approvals.list(None).is_empty());

        let asker = approvals.clone();
        let waiting =
            tokio::spawn(
                async move { asker.ask(&name(), request(), Duration::from_secs(60)).await },
            );
        while approvals.list(None).is_empty() {
            tokio::task::yield_now().await;
        }
        approvals.deny_all("the daemon is shutting down");
        let verdict = waiting.await.unwrap();
        assert_eq!(
            verdict.reason.as_deref(),
            Some("the daemon is shutting down")
        );
        // Asked after: denied at once, never listed.
        let late = approvals
            .ask(&name(), request(), Duration::from_secs(60))
            .await;
        assert_eq!(late.reason.as_deref(), Some("the daemon is shutting down"));
        assert!(approvals.list(None).is_empty());
    }

    #[tokio::test]
    async fn a_withdrawn_request_is_no_longer_pending() {
        let approvals = Approvals::new(Events::new());
        let agent = name();
        let asking = approvals.ask(&agent, request(), Duration::from_secs(60));
        let _ = tokio::time::timeout(Duration::from_millis(10), asking).await;
        assert!(approvals.list(None).is_empty());
    }
}
