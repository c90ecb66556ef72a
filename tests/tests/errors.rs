//! Every public error type is a standard error (`std::error::Error + Send + Sync + 'static`),
//! so `?` carries it into `Box<dyn Error + Send + Sync>` or `anyhow`, and the errors that wrap
//! another give it back through `source()`.

use std::error::Error;

use flujo_core::arena::ArenaError;
use flujo_core::cache::CacheError;
use flujo_core::context::MergeError;
use flujo_core::graph::{Graph, GraphError, NodeId, StepError};
use flujo_core::interp::{ErrorKind, RunError};
use flujo_core::policy::{Abort, ErrorClass, RetryPolicyError, UsageDenied};
use flujo_core::policy::{BreakerConfigError, IllegalTransition, Rejected as Refused};
use flujo_core::ring::{CapacityError, Full};
use flujo_runtime::breakers::BreakerError;
use flujo_runtime::config::duration::ParseDurationError;
use flujo_runtime::config::{ConfigError, OptimizationConfig};
use flujo_runtime::parts::admission::LimitError;
use flujo_runtime::parts::queue::Rejected as QueueRejected;
use flujo_runtime::ticket::{TicketError, WaitError};
use flujo_runtime::{BuildError, Executor, Panicked, Refusal, Rejected, RunFailure, TryRunError};

fn is_std_error<E: Error + Send + Sync + 'static>() {}

#[test]
fn every_public_error_type_is_a_std_error() {
    // flujo-core
    is_std_error::<GraphError>();
    is_std_error::<StepError>();
    is_std_error::<ErrorKind>();
    is_std_error::<RunError<'static>>();
    is_std_error::<MergeError>();
    is_std_error::<UsageDenied>();
    is_std_error::<Abort>();
    is_std_error::<RetryPolicyError>();
    is_std_error::<BreakerConfigError>();
    is_std_error::<IllegalTransition>();
    is_std_error::<Refused>();
    is_std_error::<CacheError>();
    is_std_error::<CapacityError>();
    is_std_error::<Full<u64>>();
    is_std_error::<ArenaError>();
    // flujo-runtime
    is_std_error::<RunFailure>();
    is_std_error::<Refusal>();
    is_std_error::<Rejected<u64, ()>>();
    is_std_error::<Panicked>();
    is_std_error::<BuildError>();
    is_std_error::<ConfigError>();
    is_std_error::<ParseDurationError>();
    is_std_error::<BreakerError>();
    is_std_error::<QueueRejected<u64>>();
    is_std_error::<LimitError>();
    is_std_error::<TicketError>();
    is_std_error::<WaitError<u64>>();
    is_std_error::<TryRunError<u64, ()>>();
    is_std_error::<flujo_runtime::monitor::detect::DetectorConfigError>();
}

#[test]
fn errors_that_wrap_another_give_it_back_as_their_source() {
    let step = StepError::permanent("card declined");
    let kind = ErrorKind::Step(step.clone());
    let source = kind.source().expect("a step error is the kind's source");
    assert_eq!(source.to_string(), step.to_string());

    let run = RunError {
        node: NodeId(3),
        step: "charge",
        kind: kind.clone(),
    };
    assert_eq!(
        run.to_string(),
        "step `charge` (node 3): Permanent: card declined"
    );
    let via_run = run
        .source()
        .and_then(Error::source)
        .expect("run -> kind -> step");
    assert_eq!(via_run.to_string(), step.to_string());

    // A run's failure as the executor gives it back.
    let g = Graph::<u64, ()>::build(|b| {
        b.task("charge", |_, _| {
            Err(StepError::new(ErrorClass::Permanent, "card declined"))
        })
    })
    .unwrap();
    let ex = Executor::new(OptimizationConfig::default()).unwrap();
    let failure: RunFailure = ex.run(&g, 1, ()).unwrap().error.expect("the step failed");
    assert_eq!(failure.kind, kind);
    let boxed: Box<dyn Error + Send + Sync> = Box::new(failure);
    assert!(boxed.source().is_some());
    assert_eq!(ErrorKind::Cancelled.source().map(|_| ()), None);

    let merge = MergeError::User(StepError::new(ErrorClass::Permanent, "no"));
    assert!(merge.source().is_some());

    // `?` from a build error into a boxed error.
    fn build() -> Result<Graph<u64, ()>, Box<dyn Error + Send + Sync>> {
        Ok(Graph::<u64, ()>::build(|b| b.sequence("empty", &[]))?)
    }
    let e = build().expect_err("an empty sequence is invalid");
    assert!(!e.to_string().is_empty());
}
