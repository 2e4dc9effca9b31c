//! Calls-per-second pacing (SPEC §8.2) as pure arithmetic over nanosecond timestamps.
//!
//! Two rules together: dial starts follow an even theoretical schedule (`interval = 1/cps`,
//! which never drifts, so the achieved rate equals the configured one), and no start may make
//! any one-second window hold more than `ceil(cps)` starts (a start late by a scheduler tick
//! must not let the next on-time start squeeze an extra dial into a window).

use std::collections::VecDeque;

const SECOND_NS: i128 = 1_000_000_000;
/// How far behind the theoretical schedule a late start may catch up. A dispatcher pass that
/// was held up (a slow commit, a busy CPU) makes up the slots it missed instead of losing
/// them, which keeps the achieved rate on target; a fast configuration also gets several
/// dials per pass. The per-second cap below still bounds every window.
const CATCH_UP_NS: i128 = 250_000_000;

/// Pacing state of one telephony configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pacer {
    /// The rate this state was built for; a changed rate starts a fresh schedule.
    calls_per_second: f64,
    interval_ns: i128,
    per_window: usize,
    next_slot_ns: Option<i128>,
    recent: VecDeque<i128>,
}

impl Pacer {
    /// `calls_per_second` must be positive; non-finite or non-positive values are treated as
    /// one call per second rather than stalling the queue forever.
    pub fn new(calls_per_second: f64) -> Self {
        let cps = if calls_per_second.is_finite() && calls_per_second > 0.0 {
            calls_per_second
        } else {
            1.0
        };
        let interval_ns = ((SECOND_NS as f64) / cps).round().max(1.0) as i128;
        let per_window = (cps.floor() as usize).max(1);
        Self {
            calls_per_second,
            interval_ns,
            per_window,
            next_slot_ns: None,
            recent: VecDeque::with_capacity(per_window + 1),
        }
    }

    /// When the latest dial started (ns), if any. Claims use it to keep dial start times
    /// monotonic when nodes' clocks or lock waits would put a start before the previous one.
    pub fn last_start(&self) -> Option<i128> {
        self.recent.back().copied()
    }

    /// The configured rate this pacer enforces.
    pub fn calls_per_second(&self) -> f64 {
        self.calls_per_second
    }

    /// Earliest time (ns) a dial may start, given `now_ns`.
    pub fn ready_at(&self, now_ns: i128) -> i128 {
        let mut at = now_ns;
        if let Some(slot) = self.next_slot_ns {
            at = at.max(slot);
        }
        at = at.max(self.window_ready_at());
        at
    }

    fn window_ready_at(&self) -> i128 {
        let mut at = i128::MIN;
        if self.recent.len() >= self.per_window {
            // The start `per_window` back must be at least a full second before this one.
            let idx = self.recent.len() - self.per_window;
            if let Some(old) = self.recent.get(idx) {
                at = at.max(old + SECOND_NS);
            }
        }
        at
    }

    /// Takes up to `wanted` slots at `now_ns`: how many it took and, if it stopped short, when
    /// to try again.
    pub fn take_up_to(&mut self, wanted: i64, now_ns: i128) -> (i64, Option<i128>) {
        let mut taken = 0;
        while taken < wanted {
            match self.try_take(now_ns) {
                Ok(()) => taken += 1,
                Err(at) => return (taken, Some(at)),
            }
        }
        (taken, None)
    }

    /// Takes a slot at `now_ns` if one is free; otherwise returns when to try again.
    pub fn try_take(&mut self, now_ns: i128) -> Result<(), i128> {
        let ready = self.ready_at(now_ns);
        if ready > now_ns {
            return Err(ready);
        }
        // Keep the theoretical schedule, but never further back than the catch-up allowance,
        // so an idle period never turns into a burst.
        let floor = now_ns - CATCH_UP_NS;
        let base = self.next_slot_ns.map_or(floor, |slot| slot.max(floor));
        self.next_slot_ns = Some(base + self.interval_ns);
        self.recent.push_back(now_ns);
        // Starts a second or more ago can no longer constrain a window that includes now, so
        // the state stays as small as the last second's starts (exactly equivalent).
        while self.recent.len() > self.per_window
            || self
                .recent
                .front()
                .is_some_and(|t| *t <= now_ns - SECOND_NS)
        {
            self.recent.pop_front();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a pacer as a dispatcher would, waking `lateness_ns` after each ready time.
    fn simulate(cps: f64, seconds: i128, lateness_ns: i128) -> Vec<i128> {
        let mut p = Pacer::new(cps);
        let mut starts = Vec::new();
        let mut now = 0;
        while now < seconds * SECOND_NS {
            match p.try_take(now) {
                Ok(()) => starts.push(now),
                Err(at) => now = at + lateness_ns,
            }
        }
        starts
    }

    fn worst_window(starts: &[i128]) -> usize {
        starts
            .iter()
            .map(|&t| {
                starts
                    .iter()
                    .filter(|&&s| s >= t && s < t + SECOND_NS)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn five_per_second_never_puts_more_than_five_in_a_window() {
        let starts = simulate(5.0, 10, 0);
        assert_eq!(worst_window(&starts), 5);
        assert_eq!(starts.len(), 50);
    }

    #[test]
    fn late_wakeups_neither_overshoot_a_window_nor_lose_rate() {
        let starts = simulate(10.0, 60, 1_300_000);
        assert!(worst_window(&starts) <= 10);
        // 60 s at 10/s, within 1 %.
        assert!(starts.len() >= 594, "only {} starts", starts.len());
    }

    #[test]
    fn an_idle_pacer_does_not_burst() {
        let mut p = Pacer::new(2.0);
        assert!(p.try_take(0).is_ok());
        let t = 100 * SECOND_NS;
        assert!(p.try_take(t).is_ok());
        assert_eq!(p.try_take(t + 1), Err(t - CATCH_UP_NS + SECOND_NS / 2));
    }

    #[test]
    fn a_fast_configuration_gets_several_slots_in_one_pass() {
        let mut p = Pacer::new(1000.0);
        let taken = (0..1000).filter(|_| p.try_take(SECOND_NS).is_ok()).count();
        assert_eq!(taken, 251);
    }

    #[test]
    fn fractional_rates_space_calls_out() {
        let starts = simulate(0.5, 10, 0);
        // The first slot may catch up by the allowance; after it the spacing is exact.
        assert_eq!(starts[1], 2 * SECOND_NS - CATCH_UP_NS);
        assert!(
            starts
                .windows(2)
                .skip(1)
                .all(|w| w[1] - w[0] == 2 * SECOND_NS)
        );
        assert_eq!(starts.len(), 6);
    }
}
