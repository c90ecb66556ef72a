//! Error classes and the per-step recovery table that maps each class to what happens next.
//!
//! Two classes are outside the table's reach: [`ErrorClass::Usage`] (the run's budget said no)
//! and [`ErrorClass::Cancelled`] (the host or a failing sibling stopped the run) always abort
//! the run, whatever the table holds. [`RecoveryTable::lookup`] enforces that, so no caller
//! can forget it.

use core::fmt;

/// Why an attempt failed. The interpreter classifies every failure into one of these before it
/// consults the step's [`RecoveryTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A failure that may go away on its own (a dropped connection, a busy peer).
    Transient,
    /// A failure that will repeat if retried (bad credentials, a missing resource).
    Permanent,
    /// A validator rejected the step's output.
    Validation,
    /// The attempt ran past its deadline.
    Timeout,
    /// The step panicked; the runtime caught it.
    Panic,
    /// The step's circuit breaker is open and refused the call.
    CircuitOpen,
    /// The run's usage budget refused the step's reservation (always aborts).
    Usage,
    /// The run was cancelled (always aborts).
    Cancelled,
}

impl ErrorClass {
    /// Every class, in declaration order (which is also each class's table index).
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::Transient,
        ErrorClass::Permanent,
        ErrorClass::Validation,
        ErrorClass::Timeout,
        ErrorClass::Panic,
        ErrorClass::CircuitOpen,
        ErrorClass::Usage,
        ErrorClass::Cancelled,
    ];

    /// `true` for the classes that abort the run whatever the recovery table says.
    pub const fn always_aborts(self) -> bool {
        matches!(self, ErrorClass::Usage | ErrorClass::Cancelled)
    }

    /// The class's lower-case name, for records and messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Validation => "validation",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Panic => "panic",
            ErrorClass::CircuitOpen => "circuit-open",
            ErrorClass::Usage => "usage",
            ErrorClass::Cancelled => "cancelled",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a step does about a failed attempt of a given class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Recovery {
    /// Try again after the retry policy's backoff, while attempts are left (then fall back).
    Retry,
    /// Run the step's fallback step (a step without one fails).
    Fallback,
    /// Succeed with the step's default output. The table only says "skip"; the default value
    /// lives with the step.
    Skip,
    /// Fail the step.
    Fail,
}

/// The class of a failure that aborts the run regardless of the recovery table
/// ([`ErrorClass::Usage`] or [`ErrorClass::Cancelled`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Abort {
    /// The class that aborted.
    pub class: ErrorClass,
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} error aborts the run", self.class)
    }
}

impl core::error::Error for Abort {}

/// A step's map from [`ErrorClass`] to [`Recovery`]: a fixed array, `const`-constructible, so
/// a table costs one indexed load to consult.
///
/// The default ([`RecoveryTable::DEFAULT`]): transient and timeout failures retry; validation
/// failures fall back without retrying (re-running a step rarely fixes its output);
/// permanent, panic and circuit-open failures fall back. Usage and cancelled always abort.
///
/// # Examples
///
/// ```
/// use flujo_core::policy::{Abort, ErrorClass, Recovery, RecoveryTable};
///
/// const TABLE: RecoveryTable = RecoveryTable::DEFAULT
///     .with(ErrorClass::Validation, Recovery::Retry)
///     .with(ErrorClass::Permanent, Recovery::Skip)
///     // Stored, but never consulted: usage failures always abort.
///     .with(ErrorClass::Usage, Recovery::Retry);
///
/// assert_eq!(TABLE.lookup(ErrorClass::Validation), Ok(Recovery::Retry));
/// assert_eq!(TABLE.lookup(ErrorClass::Permanent), Ok(Recovery::Skip));
/// assert_eq!(
///     TABLE.lookup(ErrorClass::Usage),
///     Err(Abort { class: ErrorClass::Usage })
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecoveryTable {
    /// Indexed by `ErrorClass as usize`.
    entries: [Recovery; 8],
}

impl RecoveryTable {
    /// The default table (see the type's documentation).
    pub const DEFAULT: RecoveryTable = RecoveryTable {
        entries: [
            Recovery::Retry,    // Transient
            Recovery::Fallback, // Permanent
            Recovery::Fallback, // Validation
            Recovery::Retry,    // Timeout
            Recovery::Fallback, // Panic
            Recovery::Fallback, // CircuitOpen
            Recovery::Fail,     // Usage: never consulted
            Recovery::Fail,     // Cancelled: never consulted
        ],
    };

    /// A table that maps every class to `recovery` (usage and cancelled still abort).
    pub const fn uniform(recovery: Recovery) -> Self {
        Self {
            entries: [recovery; 8],
        }
    }

    /// This table with `class` mapped to `recovery`.
    ///
    /// Setting an entry for [`ErrorClass::Usage`] or [`ErrorClass::Cancelled`] is allowed (so
    /// tables can be built by loops over [`ErrorClass::ALL`]) but has no effect on
    /// [`lookup`](Self::lookup): those classes always abort.
    #[must_use]
    pub const fn with(mut self, class: ErrorClass, recovery: Recovery) -> Self {
        self.entries[class.index()] = recovery;
        self
    }

    /// What to do about a failure of `class`: `Err(Abort)` for usage and cancelled failures,
    /// whatever the table holds, otherwise the table's entry.
    #[inline]
    pub const fn lookup(&self, class: ErrorClass) -> Result<Recovery, Abort> {
        if class.always_aborts() {
            Err(Abort { class })
        } else {
            Ok(self.entries[class.index()])
        }
    }
}

impl Default for RecoveryTable {
    fn default() -> Self {
        Self::DEFAULT
    }
}
