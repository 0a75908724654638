//! Whether a failed try is made again on another endpoint: the upstream's retry policy
//! (`[upstreams.NAME.retry]`) applied to how the try ended, how many tries were made, the
//! time left, and whether the request may be sent twice at all. Pure functions: the
//! client ([`super::client`]) asks for the endpoints left and the retry budget only when
//! this says yes.

use super::config::RetryPolicy;
use crate::error::{ProxyError, Retry};

/// Tries of one request at most, whatever the policy (the config allows up to 10).
pub const MAX_TRIES: usize = 10;

/// How a try ended, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryEnd {
    /// The upstream answered with this status.
    Status(u16),
    /// No answer: the connect, the request or the response head failed.
    Failed(ProxyError),
}

/// Whether `policy` retries a try that ended so. The one place that maps an error to a
/// retry condition, by the error's own retry class ([`ProxyError::retry`]): a request
/// that never reached the upstream (refused or timed-out connect) is `connect_failure`, a
/// connection closed before any response byte is `reset`, and a response timeout is
/// retried as the `504` it is answered with.
pub fn is_retried(policy: &RetryPolicy, end: TryEnd) -> bool {
    match end {
        TryEnd::Status(status) => status >= 500 && policy.on_statuses.contains(&status),
        TryEnd::Failed(error) => match error.retry() {
            Retry::NotSent => policy.on_connect_failure,
            Retry::ClosedUnanswered => policy.on_reset,
            Retry::IfIdempotent => {
                error == ProxyError::UpstreamTimeout && policy.on_statuses.contains(&504)
            }
            Retry::Never => false,
        },
    }
}

/// Whether a request may be sent again after a try that ended so: its whole body must be
/// in hand, and either the caller allows repeating it (an idempotent method, or a route
/// with `retry_non_idempotent`) or the request never reached the upstream at all.
pub fn is_repeatable(end: TryEnd, body_in_hand: bool, caller_allows: bool) -> bool {
    let never_sent = matches!(end, TryEnd::Failed(error) if error.retry() == Retry::NotSent);
    body_in_hand && (caller_allows || never_sent)
}

/// Where the request stands after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The request may be sent again: its whole body is in hand and its method is safe to
    /// repeat (or the route allows repeating it).
    pub repeatable: bool,
    /// Tries made so far, the failed one included.
    pub tries: usize,
    /// The policy's `timeout` (and the caller's deadline) has not passed.
    pub before_deadline: bool,
    /// A usable endpoint has not been tried yet.
    pub has_untried: bool,
}

/// What to do after a failed try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try another endpoint (once the retry budget grants it).
    Retry,
    /// The policy retries this failure, but nothing is left: tries, time or endpoints.
    Exhausted,
    /// Not retried: the policy does not retry this failure, or the request cannot be
    /// repeated.
    Stop,
}

/// The retry decision for a try that ended with `end`.
pub fn decide(policy: &RetryPolicy, end: TryEnd, attempt: Attempt) -> Decision {
    if !attempt.repeatable || !is_retried(policy, end) {
        return Decision::Stop;
    }
    let tries_left = attempt.tries < policy.attempts as usize && attempt.tries < MAX_TRIES;
    if tries_left && attempt.before_deadline && attempt.has_untried {
        Decision::Retry
    } else {
        Decision::Exhausted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProxyError::*;

    fn policy(attempts: u32, connect: bool, reset: bool, statuses: &[u16]) -> RetryPolicy {
        RetryPolicy {
            attempts,
            on_connect_failure: connect,
            on_reset: reset,
            on_statuses: statuses.to_vec(),
            per_try_timeout: None,
            timeout: None,
            budget_percent: 20,
            buffer_body_bytes: 64 * 1024,
        }
    }

    #[test]
    fn failures_map_to_the_policys_conditions() {
        let defaults = policy(2, true, true, &[]);
        let statuses = policy(2, false, false, &[502, 503, 504]);
        let nothing = policy(2, false, false, &[]);
        let cases: &[(&RetryPolicy, TryEnd, bool)] = &[
            (&defaults, TryEnd::Failed(UpstreamConnect), true),
            (&defaults, TryEnd::Failed(UpstreamConnectTimeout), true),
            (&defaults, TryEnd::Failed(UpstreamClosed), true),
            (&defaults, TryEnd::Failed(UpstreamTimeout), false),
            (&defaults, TryEnd::Status(503), false),
            (&statuses, TryEnd::Failed(UpstreamConnect), false),
            (&statuses, TryEnd::Failed(UpstreamClosed), false),
            (&statuses, TryEnd::Failed(UpstreamTimeout), true),
            (&statuses, TryEnd::Status(502), true),
            (&statuses, TryEnd::Status(503), true),
            (&statuses, TryEnd::Status(500), false),
            (&statuses, TryEnd::Status(200), false),
            (&statuses, TryEnd::Status(404), false),
            // A malformed answer or a refusal here is never retried.
            (&defaults, TryEnd::Failed(UpstreamBadResponse), false),
            (&statuses, TryEnd::Failed(UpstreamBadResponse), false),
            (&defaults, TryEnd::Failed(Overloaded), false),
            (&defaults, TryEnd::Failed(NoEndpoint), false),
            (&nothing, TryEnd::Failed(UpstreamConnect), false),
            (&nothing, TryEnd::Failed(UpstreamTimeout), false),
        ];
        for (policy, end, want) in cases {
            assert_eq!(is_retried(policy, *end), *want, "{end:?} {policy:?}");
        }
    }

    #[test]
    fn a_request_never_sent_is_repeatable_whatever_the_method() {
        // (how the try ended, body in hand, the caller allows a repeat) → repeatable
        let cases: &[(TryEnd, bool, bool, bool)] = &[
            (TryEnd::Failed(UpstreamConnect), true, false, true),
            (TryEnd::Failed(UpstreamConnectTimeout), true, false, true),
            (TryEnd::Failed(UpstreamConnect), false, true, false),
            (TryEnd::Failed(UpstreamClosed), true, false, false),
            (TryEnd::Failed(UpstreamClosed), true, true, true),
            (TryEnd::Failed(UpstreamTimeout), true, false, false),
            (TryEnd::Status(503), true, false, false),
            (TryEnd::Status(503), true, true, true),
        ];
        for &(end, in_hand, allows, want) in cases {
            assert_eq!(
                is_repeatable(end, in_hand, allows),
                want,
                "{end:?} {in_hand} {allows}"
            );
        }
    }

    #[test]
    fn retries_only_while_tries_time_and_endpoints_are_left() {
        let two = policy(2, true, true, &[503]);
        let ten = policy(10, true, true, &[503]);
        let reset = TryEnd::Failed(UpstreamClosed);
        let ok = Attempt {
            repeatable: true,
            tries: 1,
            before_deadline: true,
            has_untried: true,
        };
        let cases: &[(&RetryPolicy, TryEnd, Attempt, Decision)] = &[
            (&two, reset, ok, Decision::Retry),
            (&two, TryEnd::Status(503), ok, Decision::Retry),
            (&two, TryEnd::Status(502), ok, Decision::Stop),
            (
                &two,
                TryEnd::Failed(UpstreamBadResponse),
                ok,
                Decision::Stop,
            ),
            (
                &two,
                reset,
                Attempt {
                    repeatable: false,
                    ..ok
                },
                Decision::Stop,
            ),
            (&two, reset, Attempt { tries: 2, ..ok }, Decision::Exhausted),
            (&ten, reset, Attempt { tries: 9, ..ok }, Decision::Retry),
            (
                &ten,
                reset,
                Attempt {
                    tries: MAX_TRIES,
                    ..ok
                },
                Decision::Exhausted,
            ),
            (
                &two,
                reset,
                Attempt {
                    before_deadline: false,
                    ..ok
                },
                Decision::Exhausted,
            ),
            (
                &two,
                reset,
                Attempt {
                    has_untried: false,
                    ..ok
                },
                Decision::Exhausted,
            ),
            // Not retried at all wins over nothing left.
            (
                &two,
                TryEnd::Status(502),
                Attempt {
                    has_untried: false,
                    ..ok
                },
                Decision::Stop,
            ),
        ];
        for (policy, end, attempt, want) in cases {
            assert_eq!(decide(policy, *end, *attempt), *want, "{end:?} {attempt:?}");
        }
    }
}
