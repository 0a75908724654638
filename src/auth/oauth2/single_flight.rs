//! One introspection per token at a time on a worker: requests that arrive with a token
//! already being introspected wait for that verdict instead of asking the authorization
//! server again. Without it, a burst of requests with a popular token (say, when its cache
//! entry expires) would become a burst of introspections.
//!
//! Per worker: `Rc`, `RefCell`, wakers, no atomics shared with other cores. The first
//! request of a key leads: it introspects and publishes its verdict with
//! [`Leader::finish`]. A leader dropped before that (its connection went away mid-await)
//! abandons: its followers then introspect on their own.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::cache::Cached;

/// A verdict as followers receive it: `None` when the authorization server failed.
pub type Verdict = Option<Cached>;

type Flights = HashMap<[u8; 32], Rc<Slot>, ahash::RandomState>;

/// The worker's introspections in flight, by token digest.
#[derive(Default)]
pub struct SingleFlight {
    flights: Rc<RefCell<Flights>>,
}

/// What a request does about a token nobody has cached.
pub enum Joined {
    /// Introspect, then [`Leader::finish`].
    Lead(Leader),
    /// Await the leader's verdict.
    Follow(Follower),
}

impl SingleFlight {
    pub fn join(&self, key: [u8; 32]) -> Joined {
        let mut flights = self.flights.borrow_mut();
        if let Some(slot) = flights.get(&key) {
            return Joined::Follow(Follower(slot.clone()));
        }
        let slot = Rc::new(Slot::default());
        flights.insert(key, slot.clone());
        Joined::Lead(Leader {
            key,
            slot,
            flights: self.flights.clone(),
            finished: false,
        })
    }
}

#[derive(Default)]
struct Slot {
    /// `None` while the leader runs; then its verdict, or `None` inside when it abandoned.
    outcome: RefCell<Option<Option<Verdict>>>,
    wakers: RefCell<Vec<Waker>>,
}

impl Slot {
    fn settle(&self, outcome: Option<Verdict>) {
        *self.outcome.borrow_mut() = Some(outcome);
        for waker in self.wakers.take() {
            waker.wake();
        }
    }
}

/// The request that introspects a token for everyone waiting on it.
pub struct Leader {
    key: [u8; 32],
    slot: Rc<Slot>,
    flights: Rc<RefCell<Flights>>,
    finished: bool,
}

impl Leader {
    /// Hands `verdict` to the followers; the next request with this token starts afresh
    /// (from the cache, normally).
    pub fn finish(mut self, verdict: &Verdict) {
        self.finished = true;
        self.leave();
        self.slot.settle(Some(verdict.clone()));
    }

    fn leave(&self) {
        if let Ok(mut flights) = self.flights.try_borrow_mut() {
            if flights
                .get(&self.key)
                .is_some_and(|s| Rc::ptr_eq(s, &self.slot))
            {
                flights.remove(&self.key);
            }
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.finished {
            self.leave();
            self.slot.settle(None);
        }
    }
}

/// Resolves to the leader's verdict, or `None` when the leader abandoned.
pub struct Follower(Rc<Slot>);

impl Future for Follower {
    type Output = Option<Verdict>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(outcome) = &*self.0.outcome.borrow() {
            return Poll::Ready(outcome.clone());
        }
        let mut wakers = self.0.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(follower: &mut Follower) -> Poll<Option<Verdict>> {
        Pin::new(follower).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn followers_get_the_leaders_verdict() {
        let flights = SingleFlight::default();
        let Joined::Lead(leader) = flights.join([1; 32]) else {
            panic!("the first request leads");
        };
        let Joined::Follow(mut a) = flights.join([1; 32]) else {
            panic!("the second follows");
        };
        let Joined::Follow(mut b) = flights.join([1; 32]) else {
            panic!("the third follows");
        };
        assert!(
            matches!(flights.join([2; 32]), Joined::Lead(_)),
            "another token leads"
        );
        assert_eq!(poll(&mut a), Poll::Pending);
        leader.finish(&Some(Cached::Inactive));
        assert_eq!(poll(&mut a), Poll::Ready(Some(Some(Cached::Inactive))));
        assert_eq!(poll(&mut b), Poll::Ready(Some(Some(Cached::Inactive))));
        assert!(flights.flights.borrow().is_empty());
        assert!(matches!(flights.join([1; 32]), Joined::Lead(_)));
    }

    #[test]
    fn a_failure_is_shared_and_an_abandoned_flight_releases_its_followers() {
        let flights = SingleFlight::default();
        let Joined::Lead(leader) = flights.join([1; 32]) else {
            panic!("leads");
        };
        let Joined::Follow(mut follower) = flights.join([1; 32]) else {
            panic!("follows");
        };
        leader.finish(&None);
        assert_eq!(poll(&mut follower), Poll::Ready(Some(None)));

        let Joined::Lead(leader) = flights.join([1; 32]) else {
            panic!("leads again");
        };
        let Joined::Follow(mut follower) = flights.join([1; 32]) else {
            panic!("follows");
        };
        drop(leader);
        assert_eq!(poll(&mut follower), Poll::Ready(None));
        assert!(flights.flights.borrow().is_empty());
    }
}
