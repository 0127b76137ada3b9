//! What makes a timing readable on a shared machine: a median with its
//! spread, and the machine's load around the run.
//!
//! The spread of a median is a distribution-free confidence interval from
//! order statistics (no normality assumed: timings have long right tails),
//! or the min-max when there are too few samples for one.

use std::fmt;

/// A median and the interval around it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    /// The median sample.
    pub median: f64,
    /// Lower end of the interval.
    pub lo: f64,
    /// Upper end of the interval.
    pub hi: f64,
    /// Samples.
    pub n: usize,
    /// Whether `lo..hi` is a 95% confidence interval for the median (else
    /// it is the min-max of fewer than six samples).
    pub ci95: bool,
}

/// P(X <= k) for X ~ Binomial(n, 1/2).
fn binomial_half_cdf(n: usize, k: usize) -> f64 {
    // log-space terms: n may be in the hundreds
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_choose = 0.0f64; // ln C(n, 0)
    let mut sum = 0.0;
    for i in 0..=k.min(n) {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        sum += (ln_choose + ln_half_n).exp();
    }
    sum.min(1.0)
}

impl Spread {
    /// The median of `samples` and its 95% confidence interval: the order
    /// statistics `x(j)` and `x(n+1-j)` with the largest `j` such that
    /// P(Binomial(n, 1/2) < j) <= 2.5%. Fewer than six samples admit no
    /// such interval; their min-max is given instead. NaN when empty.
    pub fn of(samples: &[f64]) -> Spread {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Spread {
                median: f64::NAN,
                lo: f64::NAN,
                hi: f64::NAN,
                n: 0,
                ci95: false,
            };
        }
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        // j is 1-based: the largest with P(X <= j - 1) <= 0.025
        let j = (1..=n / 2)
            .take_while(|&j| binomial_half_cdf(n, j - 1) <= 0.025)
            .last();
        match j {
            Some(j) => Spread {
                median,
                lo: v[j - 1],
                hi: v[n - j],
                n,
                ci95: true,
            },
            None => Spread {
                median,
                lo: v[0],
                hi: v[n - 1],
                n,
                ci95: false,
            },
        }
    }

    /// The interval mapped through a decreasing `f` (its ends swap):
    /// seconds to tokens per second.
    pub fn map_decreasing(self, f: impl Fn(f64) -> f64) -> Spread {
        Spread {
            median: f(self.median),
            lo: f(self.hi),
            hi: f(self.lo),
            ..self
        }
    }

    /// Half the interval's width relative to the median.
    pub fn relative_half_width(&self) -> f64 {
        (self.hi - self.lo) / 2.0 / self.median.abs()
    }

    /// `[lo, hi]` with `decimals` decimals (a dash would read as a minus
    /// sign beside negative values).
    pub fn interval(&self, decimals: usize) -> String {
        format!("[{:.decimals$}, {:.decimals$}]", self.lo, self.hi)
    }

    /// What the interval is, for a table's caption.
    pub fn kind(&self) -> &'static str {
        if self.ci95 {
            "95% confidence interval of the median"
        } else {
            "min-max"
        }
    }
}

/// The 1-minute load average around a run, against the cores there are:
/// a reader can tell a real change from a busy machine.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Load {
    /// Before the first measurement: other work on the machine.
    pub before: f64,
    /// After the last (includes this benchmark's own threads).
    pub after: f64,
    /// Logical CPUs.
    pub cores: usize,
}

/// Load average above which the machine counts as busy before a run: a
/// fifth of a core's worth of other work already moves timings here.
const BUSY_LOAD_PER_CORE: f64 = 0.25;

/// The 1-minute load average (NaN where the system does not give one).
fn load_one() -> f64 {
    sysinfo::System::load_average().map_or(f64::NAN, |l| l.one)
}

impl Load {
    /// The load now, as the `before` of a run.
    pub fn start() -> Load {
        let now = load_one();
        Load {
            before: now,
            after: now,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }

    /// The same run with its `after` read now.
    pub fn finish(self) -> Load {
        Load {
            after: load_one(),
            ..self
        }
    }

    /// Whether other work was running when the run began.
    pub fn busy(&self) -> bool {
        self.before > BUSY_LOAD_PER_CORE * self.cores as f64
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "load average (1 min) {:.2} before, {:.2} after, {} cores",
            self.before, self.after, self.cores
        )?;
        if self.busy() {
            f.write_str(": BUSY, other work was running; compare ratios, not absolute times")
        } else {
            f.write_str(": quiet")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tail_matches_known_values() {
        // P(X <= 7) for n = 25 is 0.0216; P(X <= 8) is 0.0539
        assert!((binomial_half_cdf(25, 7) - 0.02164).abs() < 1e-4);
        assert!((binomial_half_cdf(25, 8) - 0.05388).abs() < 1e-4);
        assert!((binomial_half_cdf(10, 10) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_median_interval_uses_order_statistics() {
        let samples: Vec<f64> = (1..=25).map(f64::from).collect();
        let s = Spread::of(&samples);
        assert_eq!(s.median, 13.0);
        // n = 25: j = 8, so x(8) and x(18)
        assert_eq!((s.lo, s.hi, s.ci95), (8.0, 18.0, true));
        // order does not matter, and NaN samples are left out
        let mut shuffled: Vec<f64> = samples.iter().rev().copied().collect();
        shuffled.push(f64::NAN);
        assert_eq!(Spread::of(&shuffled), s);
    }

    #[test]
    fn few_samples_give_their_min_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.lo, s.hi, s.ci95), (2.0, 1.0, 3.0, false));
        assert_eq!(s.kind(), "min-max");
        assert!(Spread::of(&[]).median.is_nan());
        let even = Spread::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(even.median, 2.5);
    }

    #[test]
    fn a_decreasing_map_swaps_the_ends() {
        let ms = Spread::of(&[10.0, 20.0, 40.0]);
        let rate = ms.map_decreasing(|ms| 1000.0 / ms);
        assert_eq!((rate.median, rate.lo, rate.hi), (50.0, 25.0, 100.0));
        assert_eq!(rate.interval(0), "[25, 100]");
    }

    #[test]
    fn load_says_busy_when_other_work_ran() {
        let quiet = Load {
            before: 0.1,
            after: 2.0,
            cores: 2,
        };
        assert!(!quiet.busy());
        assert!(quiet.to_string().ends_with(": quiet"));
        let busy = Load {
            before: 1.2,
            ..quiet
        };
        assert!(busy.busy());
        assert!(busy.to_string().contains("BUSY"));
    }
}
