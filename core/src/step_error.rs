//! A step's failure ([`StepError`]): one tagged pointer to its class, its reason and, when
//! the step had one, the user error it failed with.
//!
//! Its own module so that the context (which fails a step that writes without declaring it)
//! and the graph (whose steps return it) both import it, neither from the other. The public
//! path is `flujo_core::graph::StepError`.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::string::{String, ToString};
// A user error is not shared state a loom model explores, and loom's `Arc` cannot hold a
// `dyn` value (it has no unsized coercion): `alloc`'s `Arc` it is, not `crate::sync`'s.
use alloc::sync::Arc;
use core::error::Error;
use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::num::NonZeroUsize;
use core::ptr::NonNull;

use crate::policy::ErrorClass;

/// The user error a [`StepError`] can carry: shared, so a step error stays cheap to clone.
pub type UserError = Arc<dyn Error + Send + Sync + 'static>;

/// A step's failure: its class (which drives recovery), a reason for humans and, optionally,
/// the user error it came from.
///
/// One pointer wide, so that a step's `Result<P, StepError>` comes back in registers when the
/// payload is a word: the class and reason live behind the pointer, in a box made by
/// [`new`](Self::new) (and its shorthands) or [`from_error`](Self::from_error), or in a
/// `static` [`StaticStepError`] that [`from_static`](Self::from_static) points to without
/// allocating (for steps that fail often and want no allocation on that path).
///
/// A user error is held in an [`Arc`](alloc::sync::Arc) ([`UserError`]), so a `StepError`
/// stays `Clone` (a clone shares it) and comes back by [`downcast_ref`](Self::downcast_ref)
/// or as the [`source`](core::error::Error::source). Two step errors are equal when their
/// classes and reasons are, and they carry no user error or the *same* one (the same
/// allocation: a clone equals its original); user errors are compared by identity, not by
/// message, because two errors that print alike need not be the same failure.
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{StaticStepError, StepError};
/// use flujo_core::policy::ErrorClass;
/// let e = StepError::transient("service busy");
/// assert_eq!(e.class(), ErrorClass::Transient);
/// assert_eq!(e.reason(), "service busy");
///
/// static BUSY: StaticStepError = StaticStepError::new(ErrorClass::Transient, "service busy");
/// assert_eq!(StepError::from_static(&BUSY), e);
/// ```
///
/// A step that fails with its own error type gives it back to the host:
///
/// ```
/// use std::error::Error;
/// use flujo_core::graph::StepError;
/// use flujo_core::policy::ErrorClass;
///
/// #[derive(Debug, PartialEq)]
/// struct OutOfStock { sku: u32 }
/// impl std::fmt::Display for OutOfStock {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "sku {} is out of stock", self.sku)
///     }
/// }
/// impl Error for OutOfStock {}
///
/// let e = StepError::from_error(ErrorClass::Permanent, OutOfStock { sku: 7 });
/// assert_eq!(e.reason(), "sku 7 is out of stock");
/// assert_eq!(e.downcast_ref::<OutOfStock>(), Some(&OutOfStock { sku: 7 }));
/// assert!(e.source().unwrap().is::<OutOfStock>());
/// assert_eq!(e.clone(), e, "a clone shares the user error");
/// assert_eq!(size_of::<StepError>(), size_of::<usize>());
/// ```
pub struct StepError {
    /// A `&'static StaticStepError` (low bit 0), or a `Box<Owned>` with its low bit set.
    tagged: NonNull<u8>,
    _owns: PhantomData<Box<Owned>>,
}

/// A step error known at compile time, for [`StepError::from_static`].
#[derive(Debug)]
pub struct StaticStepError {
    class: ErrorClass,
    reason: &'static str,
}

impl StaticStepError {
    /// An error of `class` with `reason`.
    pub const fn new(class: ErrorClass, reason: &'static str) -> Self {
        Self { class, reason }
    }
}

/// The boxed form of a [`StepError`].
struct Owned {
    class: ErrorClass,
    reason: Cow<'static, str>,
    /// The user error, when the step failed with one.
    user: Option<UserError>,
}

/// The low bit of [`StepError::tagged`] that marks a box. Both pointees are aligned to at
/// least 2 (they hold references), so the bit is free.
const OWNED: usize = 1;
const _: () = assert!(
    core::mem::align_of::<Owned>() > OWNED && core::mem::align_of::<StaticStepError>() > OWNED
);
const _: () = assert!(core::mem::size_of::<StepError>() == core::mem::size_of::<usize>());

// SAFETY: a `StepError` is either a shared `&'static StaticStepError` (which is `Sync`: a class
// and a `&'static str`) or a uniquely owned `Box<Owned>` (`Send + Sync`: a class, a
// `Cow<'static, str>` and an `Arc` of a `Send + Sync` error); it never shares the box, so it
// is as thread-safe as those are.
unsafe impl Send for StepError {}
// SAFETY: see `Send`: `&StepError` only reads the pointee.
unsafe impl Sync for StepError {}

impl StepError {
    /// An error of `class` with `reason` (boxed: one allocation).
    pub fn new(class: ErrorClass, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new_boxed(class, reason.into(), None)
    }

    /// The boxed form, out of line: a step that can fail keeps only a call on its error path
    /// (inlined, the box's construction and its unwinding cleanup cost the step's success
    /// path a stack frame; measured on W2: +2 instructions per step).
    #[cold]
    #[inline(never)]
    fn new_boxed(class: ErrorClass, reason: Cow<'static, str>, user: Option<UserError>) -> Self {
        Self::owned(Box::new(Owned {
            class,
            reason,
            user,
        }))
    }

    /// An error of `class` carrying the user error `error`, whose `Display` text becomes the
    /// reason. Allocates the box, the `Arc` and the reason's text.
    ///
    /// (There is no `From<E: Error>`: `StepError` is an `Error` itself, and such an impl
    /// would overlap the standard `From<T> for T`; the class must be chosen anyway.)
    pub fn from_error<E: Error + Send + Sync + 'static>(class: ErrorClass, error: E) -> Self {
        Self::from_user_error(class, Arc::new(error))
    }

    /// An error of `class` carrying the shared user error `error` (see
    /// [`from_error`](Self::from_error)).
    pub fn from_user_error(class: ErrorClass, error: UserError) -> Self {
        let reason = Cow::Owned(error.to_string());
        Self::new_boxed(class, reason, Some(error))
    }

    /// The error `e`, without allocating.
    pub const fn from_static(e: &'static StaticStepError) -> Self {
        Self {
            // SAFETY: a reference is never null.
            tagged: unsafe { NonNull::new_unchecked(e as *const StaticStepError as *mut u8) },
            _owns: PhantomData,
        }
    }

    fn owned(b: Box<Owned>) -> Self {
        debug_assert!(
            core::mem::align_of::<Owned>() > OWNED,
            "the tag bit is free"
        );
        // SAFETY: `Box::into_raw` is never null, and `Owned` is aligned to at least 2 (it
        // holds pointers), so the address has its low bit clear and setting it leaves it
        // non-null.
        let raw = unsafe { NonNull::new_unchecked(Box::into_raw(b)) };
        Self {
            tagged: raw.cast::<u8>().map_addr(|a| a | OWNED),
            _owns: PhantomData,
        }
    }

    /// Whether this error owns a box (else it points to a static error).
    #[inline]
    fn is_owned(&self) -> bool {
        self.tagged.addr().get() & OWNED != 0
    }

    /// The box's pointer, with the tag cleared. Only for an owned error.
    #[inline]
    fn box_ptr(&self) -> NonNull<Owned> {
        debug_assert!(self.is_owned());
        self.tagged
            .map_addr(|a| {
                // SAFETY: the tagged address is a box's address with bit 0 set; clearing the
                // bit gives the box's address back, which is not null.
                unsafe { NonZeroUsize::new_unchecked(a.get() & !OWNED) }
            })
            .cast::<Owned>()
    }

    /// The box, for an owned error.
    #[inline]
    fn boxed(&self) -> Option<&Owned> {
        if self.is_owned() {
            // SAFETY: the tag is set only by `owned`, on the pointer of a box this error
            // owns until it drops; the box is never handed out mutably.
            Some(unsafe { self.box_ptr().as_ref() })
        } else {
            None
        }
    }

    /// The class and reason, wherever they live.
    #[inline]
    fn parts(&self) -> (ErrorClass, &str) {
        match self.boxed() {
            Some(o) => (o.class, &o.reason),
            None => {
                // SAFETY: an untagged pointer is only made by `from_static`, from a
                // `&'static StaticStepError`.
                let s = unsafe { self.tagged.cast::<StaticStepError>().as_ref() };
                (s.class, s.reason)
            }
        }
    }

    /// What kind of failure this is.
    #[inline]
    pub fn class(&self) -> ErrorClass {
        self.parts().0
    }

    /// Why it failed.
    pub fn reason(&self) -> &str {
        self.parts().1
    }

    /// The user error it carries, if it was made with one
    /// ([`from_error`](Self::from_error), [`from_user_error`](Self::from_user_error)).
    pub fn user_error(&self) -> Option<&UserError> {
        self.boxed().and_then(|o| o.user.as_ref())
    }

    /// The user error, if it carries one of type `E`.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.user_error()?.downcast_ref::<E>()
    }

    /// The same error with `class` (a validator's error is reclassified as validation this
    /// way). A boxed error keeps its box (and its user error); a static one is boxed.
    pub fn with_class(self, class: ErrorClass) -> Self {
        let (own, reason) = self.parts();
        if own == class {
            return self;
        }
        if !self.is_owned() {
            return Self::new(class, String::from(reason));
        }
        let this = ManuallyDrop::new(self);
        // SAFETY: `this` owns the box (it is tagged) and is never dropped (`ManuallyDrop`),
        // so the box is taken back exactly once.
        let mut b = unsafe { Box::from_raw(this.box_ptr().as_ptr()) };
        b.class = class;
        Self::owned(b)
    }

    /// A transient error (retried by the default recovery table).
    pub fn transient(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorClass::Transient, reason)
    }

    /// A permanent error (falls back, or fails, by the default recovery table).
    pub fn permanent(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorClass::Permanent, reason)
    }

    /// A validation error (what validators return).
    pub fn validation(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorClass::Validation, reason)
    }

    /// A timeout.
    pub fn timeout(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorClass::Timeout, reason)
    }
}

impl Drop for StepError {
    fn drop(&mut self) {
        if self.is_owned() {
            // SAFETY: a tagged pointer is the box this error owns; it is taken back once, here.
            drop(unsafe { Box::from_raw(self.box_ptr().as_ptr()) });
        }
    }
}

impl Clone for StepError {
    fn clone(&self) -> Self {
        match self.boxed() {
            Some(o) => Self::new_boxed(o.class, o.reason.clone(), o.user.clone()),
            None => Self {
                tagged: self.tagged,
                _owns: PhantomData,
            },
        }
    }
}

impl PartialEq for StepError {
    /// Equal classes and reasons, and no user error on either side or the same one (by
    /// identity: see the type's documentation).
    fn eq(&self, other: &Self) -> bool {
        let same_user = match (self.user_error(), other.user_error()) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_user && self.parts() == other.parts()
    }
}

impl Eq for StepError {}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (class, reason) = self.parts();
        let mut d = f.debug_struct("StepError");
        d.field("class", &class).field("reason", &reason);
        if let Some(user) = self.user_error() {
            d.field("user_error", user);
        }
        d.finish()
    }
}

impl Error for StepError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        let user: &(dyn Error + Send + Sync + 'static) = &**self.user_error()?;
        Some(user)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (class, reason) = self.parts();
        write!(f, "{class:?}: {reason}")
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
