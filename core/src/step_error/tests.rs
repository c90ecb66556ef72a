//! Step errors: one word, boxed and static forms alike, and the user error they carry.

use core::error::Error;
use std::sync::Arc;

use super::*;

static BUSY: StaticStepError = StaticStepError::new(ErrorClass::Transient, "busy");

#[test]
fn a_step_error_is_one_word_so_a_word_result_comes_back_in_registers() {
    use core::mem::size_of;
    assert_eq!(size_of::<StepError>(), size_of::<usize>());
    assert_eq!(size_of::<Option<StepError>>(), size_of::<usize>());
    assert_eq!(size_of::<Result<(), StepError>>(), size_of::<usize>());
    assert_eq!(size_of::<Result<u64, StepError>>(), 2 * size_of::<u64>());
}

#[test]
fn boxed_and_static_step_errors_read_the_same() {
    let boxed = StepError::transient("busy");
    let owned_reason = StepError::new(ErrorClass::Transient, std::string::String::from("busy"));
    let fixed = StepError::from_static(&BUSY);
    for e in [&boxed, &owned_reason, &fixed] {
        assert_eq!((e.class(), e.reason()), (ErrorClass::Transient, "busy"));
        assert_eq!(std::format!("{e}"), "Transient: busy");
    }
    assert_eq!(boxed, fixed);
    assert_eq!(owned_reason, fixed);
    assert_ne!(boxed, StepError::permanent("busy"));
    assert_ne!(boxed, StepError::transient("idle"));
    assert_eq!(
        std::format!("{fixed:?}"),
        "StepError { class: Transient, reason: \"busy\" }"
    );
}

#[test]
fn cloning_a_step_error_copies_a_static_one_and_boxes_anew_a_boxed_one() {
    let fixed = StepError::from_static(&BUSY);
    let copy = fixed.clone();
    assert_eq!(copy, fixed);
    let boxed = StepError::validation(std::string::String::from("negative"));
    let twin = boxed.clone();
    drop(boxed);
    assert_eq!(
        (twin.class(), twin.reason()),
        (ErrorClass::Validation, "negative")
    );
}

#[test]
fn with_class_changes_only_the_class() {
    let boxed = StepError::permanent(std::string::String::from("bad"));
    let same = boxed.clone().with_class(ErrorClass::Permanent);
    assert_eq!(same, boxed);
    let re = boxed.with_class(ErrorClass::Validation);
    assert_eq!((re.class(), re.reason()), (ErrorClass::Validation, "bad"));
    let from_static = StepError::from_static(&BUSY).with_class(ErrorClass::Timeout);
    assert_eq!(
        (from_static.class(), from_static.reason()),
        (ErrorClass::Timeout, "busy")
    );
    // The static error itself is untouched.
    assert_eq!(StepError::from_static(&BUSY).class(), ErrorClass::Transient);
}

#[test]
fn step_errors_cross_threads() {
    let errors = [StepError::from_static(&BUSY), StepError::timeout("late")];
    let back = std::thread::spawn(move || errors.map(|e| (e.class(), e.reason().len())))
        .join()
        .unwrap();
    assert_eq!(back, [(ErrorClass::Transient, 4), (ErrorClass::Timeout, 4)]);
}

/// A user error of the host's own type.
#[derive(Debug, PartialEq, Eq)]
struct OutOfStock {
    sku: u32,
}

impl fmt::Display for OutOfStock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sku {} is out of stock", self.sku)
    }
}

impl Error for OutOfStock {}

/// Another, to show a downcast to the wrong type finds nothing.
#[derive(Debug)]
struct Unrelated;

impl fmt::Display for Unrelated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unrelated")
    }
}

impl Error for Unrelated {}

#[test]
fn a_user_error_comes_back_by_downcast_and_as_the_source() {
    let e = StepError::from_error(ErrorClass::Permanent, OutOfStock { sku: 7 });
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert_eq!(e.reason(), "sku 7 is out of stock");
    assert_eq!(std::format!("{e}"), "Permanent: sku 7 is out of stock");
    assert_eq!(e.downcast_ref::<OutOfStock>(), Some(&OutOfStock { sku: 7 }));
    assert!(e.downcast_ref::<Unrelated>().is_none());
    let source = e.source().expect("the user error is the source");
    assert_eq!(
        source.downcast_ref::<OutOfStock>(),
        Some(&OutOfStock { sku: 7 })
    );
    // Errors without a user error have no source and downcast to nothing.
    for plain in [StepError::transient("busy"), StepError::from_static(&BUSY)] {
        assert!(plain.source().is_none());
        assert!(plain.user_error().is_none());
        assert!(plain.downcast_ref::<OutOfStock>().is_none());
    }
}

#[test]
fn a_user_error_is_shared_by_clones_and_kept_by_with_class() {
    let e = StepError::from_error(ErrorClass::Transient, OutOfStock { sku: 1 });
    let twin = e.clone();
    assert!(Arc::ptr_eq(
        e.user_error().unwrap(),
        twin.user_error().unwrap()
    ));
    assert_eq!(twin, e, "a clone equals its original");
    let re = e.with_class(ErrorClass::Validation);
    assert_eq!(re.class(), ErrorClass::Validation);
    assert_eq!(
        re.downcast_ref::<OutOfStock>(),
        Some(&OutOfStock { sku: 1 })
    );
    assert!(Arc::ptr_eq(
        re.user_error().unwrap(),
        twin.user_error().unwrap()
    ));
}

#[test]
fn user_errors_compare_by_identity_not_by_message() {
    let shared: UserError = Arc::new(OutOfStock { sku: 3 });
    let a = StepError::from_user_error(ErrorClass::Permanent, shared.clone());
    let b = StepError::from_user_error(ErrorClass::Permanent, shared);
    assert_eq!(a, b, "the same user error");
    let c = StepError::from_error(ErrorClass::Permanent, OutOfStock { sku: 3 });
    assert_ne!(a, c, "an equal-looking but separate user error");
    let text = StepError::permanent("sku 3 is out of stock");
    assert_ne!(a, text, "a plain error with the same reason");
    assert_ne!(text, a);
    let other_class =
        StepError::from_user_error(ErrorClass::Transient, a.user_error().unwrap().clone());
    assert_ne!(a, other_class);
}

#[test]
fn a_user_error_is_dropped_with_its_last_step_error() {
    let shared: UserError = Arc::new(OutOfStock { sku: 9 });
    let e = StepError::from_user_error(ErrorClass::Permanent, shared.clone());
    let twin = e.clone();
    assert_eq!(Arc::strong_count(&shared), 3);
    drop(e);
    assert_eq!(Arc::strong_count(&shared), 2);
    drop(twin);
    assert_eq!(Arc::strong_count(&shared), 1);
}

#[test]
fn a_step_error_with_a_user_error_shows_it_in_debug_and_crosses_threads() {
    let e = StepError::from_error(ErrorClass::Permanent, OutOfStock { sku: 2 });
    assert_eq!(
        std::format!("{e:?}"),
        "StepError { class: Permanent, reason: \"sku 2 is out of stock\", user_error: OutOfStock { sku: 2 } }"
    );
    let back = std::thread::spawn(move || e.downcast_ref::<OutOfStock>().map(|o| o.sku))
        .join()
        .unwrap();
    assert_eq!(back, Some(2));
}
