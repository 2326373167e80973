//! Exponential backoff with jitter, shared by the Goldmane reconnect loop and the OTLP retry loop.

use std::time::Duration;

/// How a wait is drawn from the current step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in [0, step]: spreads retries of many clients best (the OTLP spec's choice).
    Full,
    /// Uniform in [step/2, step]: never retries almost at once (for reconnecting a single stream).
    Equal,
}

/// Steps double from `initial` up to `max`; `reset` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
    jitter: Jitter,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, jitter: Jitter) -> Self {
        Backoff { initial, max: max.max(initial), step: initial, jitter }
    }

    pub fn reset(&mut self) {
        self.step = self.initial;
    }

    /// The next wait; doubles the step for the one after.
    pub fn next_wait(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let floor = match self.jitter {
            Jitter::Full => Duration::ZERO,
            Jitter::Equal => step / 2,
        };
        floor + (step - floor).mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_double_up_to_the_cap_and_reset() {
        for jitter in [Jitter::Full, Jitter::Equal] {
            let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350), jitter);
            for step in [100u64, 200, 350, 350, 350] {
                let w = b.next_wait();
                let floor = if jitter == Jitter::Equal { step / 2 } else { 0 };
                assert!(w >= Duration::from_millis(floor) && w <= Duration::from_millis(step), "{w:?} vs step {step}");
            }
            b.reset();
            assert!(b.next_wait() <= Duration::from_millis(100));
        }
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_step() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1), Jitter::Full);
        let waits: Vec<_> = (0..200).map(|_| b.next_wait()).collect();
        assert!(waits.iter().any(|w| *w < Duration::from_millis(250)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(750)));
    }
}
