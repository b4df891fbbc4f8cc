//! What the conformance suites share: running one named check under a time
//! limit, catching its panics, and the [`Report`] of every check's outcome.
//!
//! A suite returns a report instead of panicking at its first failure, so
//! one run names every broken contract at once, and a test can show that a
//! deliberately broken implementation fails exactly the contract it breaks.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;

/// What a check that did not fail found.
#[derive(Debug)]
pub(crate) enum Verdict {
    Passed,
    /// The implementation does not claim what the check is about.
    Skipped(String),
}

/// The result of one check: `Err` names the broken contract and what was seen.
pub(crate) type CheckResult = Result<Verdict, String>;

/// Fails the check with a formatted message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}
pub(crate) use ensure;

/// Turns an implementation's error into a check failure saying which call
/// failed and why that call had to succeed.
pub(crate) trait Context<T> {
    fn context(self, what: &str) -> Result<T, String>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: failed with {e}"))
    }
}

/// How one check of a suite ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Skipped(String),
    Failed(String),
}

/// Every check a suite ran, by contract name, in the order they ran.
#[derive(Clone, Debug)]
pub struct Report {
    suite: &'static str,
    outcomes: Vec<(&'static str, Outcome)>,
}

impl Report {
    pub(crate) fn new(suite: &'static str) -> Report {
        Report {
            suite,
            outcomes: Vec::new(),
        }
    }

    /// Runs `check` as the contract `name`: a panic or a run longer than
    /// `limit` is a failure of that contract, not of the whole suite.
    pub(crate) async fn run<F>(&mut self, name: &'static str, limit: Duration, check: F)
    where
        F: Future<Output = CheckResult>,
    {
        let outcome =
            match tokio::time::timeout(limit, AssertUnwindSafe(check).catch_unwind()).await {
                Ok(Ok(Ok(Verdict::Passed))) => Outcome::Passed,
                Ok(Ok(Ok(Verdict::Skipped(why)))) => Outcome::Skipped(why),
                Ok(Ok(Err(failure))) => Outcome::Failed(failure),
                Ok(Err(panic)) => Outcome::Failed(format!("panicked: {}", panic_message(&panic))),
                Err(_) => Outcome::Failed(format!("did not finish within {limit:?}")),
            };
        self.outcomes.push((name, outcome));
    }

    pub(crate) fn skip(&mut self, name: &'static str, why: &str) {
        self.outcomes.push((name, Outcome::Skipped(why.to_owned())));
    }

    /// Every contract checked, with its outcome.
    pub fn outcomes(&self) -> &[(&'static str, Outcome)] {
        &self.outcomes
    }

    /// The outcome of the contract `name`, if the suite has one by that name.
    pub fn outcome(&self, name: &str) -> Option<&Outcome> {
        self.outcomes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, o)| o)
    }

    /// The names of the contracts that failed.
    pub fn failed(&self) -> Vec<&'static str> {
        self.outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Panics with every failure unless all checks passed or were skipped;
    /// prints the report either way, so a test log shows what was skipped.
    pub fn assert_passed(&self) {
        self.assert_passed_except(&[]);
    }

    /// Like [`Report::assert_passed`], but the contracts in `known` must
    /// fail: a known deviation of an implementation, written down where its
    /// test runs the suite. Panics as well when one of them passes, so the
    /// exception goes away with the deviation.
    pub fn assert_passed_except(&self, known: &[&str]) {
        println!("{self}");
        let unexpected: Vec<_> = self
            .failed()
            .into_iter()
            .filter(|n| !known.contains(n))
            .collect();
        let fixed: Vec<_> = known
            .iter()
            .filter(|n| !matches!(self.outcome(n), Some(Outcome::Failed(_))))
            .collect();
        assert!(
            unexpected.is_empty() && fixed.is_empty(),
            "{} conformance: failed {unexpected:?}; expected to fail but did not: {fixed:?}\n{self}",
            self.suite
        );
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} conformance:", self.suite)?;
        for (name, outcome) in &self.outcomes {
            match outcome {
                Outcome::Passed => writeln!(f, "  ok      {name}")?,
                Outcome::Skipped(why) => writeln!(f, "  skipped {name}: {why}")?,
                Outcome::Failed(why) => writeln!(f, "  FAILED  {name}: {why}")?,
            }
        }
        Ok(())
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// A fresh upload id no other check (or earlier run on shared storage) uses.
pub(crate) fn fresh_id(label: &str) -> tusd_core::UploadId {
    let raw = format!("{label}-{:016x}", rand::random::<u64>());
    tusd_core::UploadId::parse(&raw).expect("labels are id-safe")
}
