use crate::policy::{Abort, ErrorClass, Recovery, RecoveryTable};

const RECOVERIES: [Recovery; 4] = [
    Recovery::Retry,
    Recovery::Fallback,
    Recovery::Skip,
    Recovery::Fail,
];

#[test]
fn default_table_rows() {
    let rows = [
        (ErrorClass::Transient, Ok(Recovery::Retry)),
        (ErrorClass::Timeout, Ok(Recovery::Retry)),
        (ErrorClass::Validation, Ok(Recovery::Fallback)),
        (ErrorClass::Permanent, Ok(Recovery::Fallback)),
        (ErrorClass::Panic, Ok(Recovery::Fallback)),
        (ErrorClass::CircuitOpen, Ok(Recovery::Fallback)),
        (
            ErrorClass::Usage,
            Err(Abort {
                class: ErrorClass::Usage,
            }),
        ),
        (
            ErrorClass::Cancelled,
            Err(Abort {
                class: ErrorClass::Cancelled,
            }),
        ),
    ];
    assert_eq!(rows.len(), ErrorClass::ALL.len());
    for (class, expected) in rows {
        assert_eq!(RecoveryTable::DEFAULT.lookup(class), expected, "{class}");
    }
    assert_eq!(RecoveryTable::default(), RecoveryTable::DEFAULT);
}

#[test]
fn usage_and_cancelled_abort_whatever_the_table_says() {
    for recovery in RECOVERIES {
        let mut table = RecoveryTable::uniform(recovery);
        for class in ErrorClass::ALL {
            table = table.with(class, recovery);
        }
        for class in ErrorClass::ALL {
            let found = table.lookup(class);
            if class.always_aborts() {
                assert_eq!(found, Err(Abort { class }), "{class} under {recovery:?}");
            } else {
                assert_eq!(found, Ok(recovery), "{class} under {recovery:?}");
            }
        }
    }
    // Exactly two classes abort.
    let aborting = ErrorClass::ALL.iter().filter(|c| c.always_aborts()).count();
    assert_eq!(aborting, 2);
}

#[test]
fn with_changes_one_entry_and_is_const() {
    const TABLE: RecoveryTable =
        RecoveryTable::DEFAULT.with(ErrorClass::Validation, Recovery::Retry);
    for class in ErrorClass::ALL {
        if class == ErrorClass::Validation {
            assert_eq!(TABLE.lookup(class), Ok(Recovery::Retry));
        } else {
            assert_eq!(TABLE.lookup(class), RecoveryTable::DEFAULT.lookup(class));
        }
    }
}

#[test]
fn class_names_are_distinct() {
    for (i, a) in ErrorClass::ALL.iter().enumerate() {
        assert_eq!(*a as usize, i);
        for b in &ErrorClass::ALL[i + 1..] {
            assert_ne!(a.as_str(), b.as_str());
        }
    }
    let message = alloc::format!(
        "{}",
        Abort {
            class: ErrorClass::Usage
        }
    );
    assert!(message.contains("usage"), "{message}");
}
