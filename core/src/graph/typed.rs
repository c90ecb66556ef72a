//! Typed steps: each step declares its input and output types, and the builder refuses, at
//! compile time, to connect nodes whose types do not meet.
//!
//! # How it lowers
//!
//! The graph itself stays what it was: flat, index-based, one payload type `P` flowing
//! between nodes. The typed layer is a thin skin over it:
//!
//! - the payload carries each stage type (`P: Carries<Line> + Carries<Event> + ..`), usually an
//!   enum whose variants are the stage types, declared once with [`payload!`](crate::payload);
//!   a graph with one type everywhere is its own payload (`T: Carries<T>`);
//! - a [`Node<I, O>`] is a [`NodeRef`] with two type markers (zero-sized), so connecting
//!   nodes is type-checked by the compiler and costs nothing at run time;
//! - a typed step `Fn(I, &mut StepCx<C>) -> Result<O, StepError>` is wrapped into the
//!   graph's single-payload step: project the payload into `I`, call, project `O` back into
//!   the payload. That is one `match` on the variant per step, inlined into the one dynamic
//!   call the interpreter already makes; no allocation, no `dyn Any`.
//!
//! The projection cannot fail inside a graph built by [`TypedBuilder`]: every node's input is
//! the output of a node whose type the compiler matched with it. The one place it can is the
//! run's input, which the host gives as a payload: a root step handed the wrong variant
//! fails with a permanent [`StepError`] (`WRONG_PAYLOAD`) rather than panicking.
//!
//! The untyped [`GraphBuilder`] is the lowering and stays public: [`TypedBuilder::untyped`]
//! reaches it, and [`Node::assume`] brings an untyped node into the typed world.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::TypeId;
use core::fmt;
use core::marker::PhantomData;

use super::{
    FailureStrategy, GraphBuilder, GraphError, GraphRule, Items, LoopOptions, MapOptions, NodeId,
    NodeRef, ParallelOptions, StaticStepError, Step, StepCx, StepError, TaskConfig, TypedValidator,
};
use crate::cache::{CacheKey, CanonicalEncode, StepFingerprint};
use crate::policy::ErrorClass;

use super::task::CacheSlot;
use super::Graph;

/// The error of a typed step, reducer, splitter or cache key handed a payload that does not
/// carry its input type. Only a run's input can be such a payload (see the module docs).
pub static WRONG_PAYLOAD: StaticStepError = StaticStepError::new(
    ErrorClass::Permanent,
    "the payload does not carry this node's input type (wrong run input)",
);

#[cold]
#[inline(never)]
fn wrong_payload() -> StepError {
    StepError::from_static(&WRONG_PAYLOAD)
}

/// A payload that can carry a `T`: the projection a typed node makes into and out of the
/// graph's single payload type.
///
/// Every type carries itself, so a graph whose stages all have one type needs nothing more.
/// For a graph whose stages have different types, declare the payload with
/// [`payload!`](crate::payload), which writes an enum with one variant per stage type and
/// these implementations. A hand-written implementation must round-trip:
/// `take(wrap(x)) == Ok(x)` and `peek(&wrap(x)) == Some(&x)`.
///
/// # Examples
///
/// ```
/// use flujo_core::graph::Carries;
/// let p: u64 = Carries::wrap(7u64);
/// assert_eq!(Carries::<u64>::take(p), Ok(7));
/// ```
pub trait Carries<T>: Sized {
    /// The payload carrying `value`.
    fn wrap(value: T) -> Self;
    /// The `T` this payload carries, or the payload back when it carries something else.
    fn take(self) -> Result<T, Self>;
    /// A reference to the `T` this payload carries, if it does.
    fn peek(&self) -> Option<&T>;
}

impl<T> Carries<T> for T {
    #[inline(always)]
    fn wrap(value: T) -> Self {
        value
    }
    #[inline(always)]
    fn take(self) -> Result<T, Self> {
        Ok(self)
    }
    #[inline(always)]
    fn peek(&self) -> Option<&T> {
        Some(self)
    }
}

/// Declares a payload enum whose variants are a graph's stage types, with its
/// [`Carries`] implementation for each, `From<stage type>` for each, and two inherent
/// methods: `take::<T>(self) -> Option<T>` and `get::<T>(&self) -> Option<&T>`, so a run's
/// output reads `r.output.and_then(Payload::take::<Score>)`.
///
/// Each variant holds one type, and each type appears once (a second variant of the same
/// type is a compile error: the payload could not tell which one a step means).
///
/// # Examples
///
/// ```
/// flujo_core::payload! {
///     /// What flows between the stages.
///     #[derive(Clone, Debug, PartialEq)]
///     pub enum Flow {
///         Line(&'static str),
///         Len(usize),
///     }
/// }
/// let p = Flow::from(3usize);
/// assert_eq!(p.get::<usize>(), Some(&3));
/// assert_eq!(p.clone().take::<&'static str>(), None);
/// assert_eq!(p.take::<usize>(), Some(3));
/// ```
#[macro_export]
macro_rules! payload {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident($ty:ty) ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* #[allow(missing_docs)] $variant($ty) ),+
        }

        impl $name {
            /// The stage value this payload carries, if it is a `T`.
            #[inline(always)]
            #[allow(dead_code)]
            $vis fn take<T>(self) -> ::core::option::Option<T>
            where
                Self: $crate::graph::Carries<T>,
            {
                <Self as $crate::graph::Carries<T>>::take(self).ok()
            }

            /// A reference to the stage value this payload carries, if it is a `T`.
            #[inline(always)]
            #[allow(dead_code)]
            $vis fn get<T>(&self) -> ::core::option::Option<&T>
            where
                Self: $crate::graph::Carries<T>,
            {
                <Self as $crate::graph::Carries<T>>::peek(self)
            }
        }

        $(
            impl $crate::graph::Carries<$ty> for $name {
                #[inline(always)]
                fn wrap(value: $ty) -> Self {
                    $name::$variant(value)
                }
                #[inline(always)]
                #[allow(unreachable_patterns)]
                fn take(self) -> ::core::result::Result<$ty, Self> {
                    match self {
                        $name::$variant(value) => ::core::result::Result::Ok(value),
                        other => ::core::result::Result::Err(other),
                    }
                }
                #[inline(always)]
                #[allow(unreachable_patterns)]
                fn peek(&self) -> ::core::option::Option<&$ty> {
                    match self {
                        $name::$variant(value) => ::core::option::Option::Some(value),
                        _ => ::core::option::Option::None,
                    }
                }
            }

            impl ::core::convert::From<$ty> for $name {
                #[inline(always)]
                fn from(value: $ty) -> Self {
                    $name::$variant(value)
                }
            }
        )+
    };
}

/// A typed handle to a node: a [`NodeRef`] whose node takes an `I` and gives an `O`. The
/// types are markers only (the handle is a `NodeRef` in size and cost); the
/// [`TypedBuilder`] uses them to refuse connections whose types do not meet.
///
/// # Examples
///
/// Connecting an output to an input of another type does not compile:
///
/// ```compile_fail
/// use flujo_core::graph::{Graph, StepError};
/// flujo_core::payload! { #[derive(Clone)] enum Flow { Text(String), Len(usize) } }
/// let g = Graph::<Flow, ()>::build_typed(|b| {
///     let len = b.task("len", |s: String, _| Ok::<_, StepError>(s.len()));
///     let twice = b.task("twice", |n: usize, _| Ok::<_, StepError>(n * 2));
///     b.sequence("s", twice.then(len)) // usize -> usize, then String -> usize: refused
/// });
/// ```
pub struct Node<I, O> {
    node: NodeRef,
    types: PhantomData<fn(I) -> O>,
}

impl<I, O> Clone for Node<I, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, O> Copy for Node<I, O> {}

impl<I, O> PartialEq for Node<I, O> {
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node
    }
}

impl<I, O> Eq for Node<I, O> {}

impl<I, O> fmt::Debug for Node<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("node", &self.node)
            .field("input", &core::any::type_name::<I>())
            .field("output", &core::any::type_name::<O>())
            .finish()
    }
}

impl<I, O> Node<I, O> {
    /// A typed handle to an untyped node, taken on trust: the builder checks nothing, and a
    /// node handed a payload that does not carry what it expects fails at run time.
    pub const fn assume(node: NodeRef) -> Self {
        Self {
            node,
            types: PhantomData,
        }
    }

    /// The untyped handle (for [`TaskConfig::fallback`], [`GraphBuilder::set_fallback`], or
    /// an untyped composite).
    pub const fn node(self) -> NodeRef {
        self.node
    }

    /// The id this node has in the frozen graph.
    pub const fn id(self) -> NodeId {
        self.node.id()
    }

    /// A chain of this node then `next`, which must take what this one gives; make it a
    /// sequence with [`TypedBuilder::sequence`].
    pub fn then<X>(self, next: Node<O, X>) -> Chain<I, X> {
        Chain {
            children: alloc::vec![self.node, next.node],
            types: PhantomData,
        }
    }
}

/// Nodes in order, each taking what the one before gives: `a.then(b).then(c)` is a
/// `Chain<A's input, C's output>`. Built outside the builder, made a sequence node by
/// [`TypedBuilder::sequence`].
pub struct Chain<I, O> {
    children: Vec<NodeRef>,
    types: PhantomData<fn(I) -> O>,
}

impl<I, O> fmt::Debug for Chain<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("children", &self.children)
            .finish()
    }
}

impl<I, O> From<Node<I, O>> for Chain<I, O> {
    /// A chain of one node.
    fn from(node: Node<I, O>) -> Self {
        Chain {
            children: alloc::vec![node.node],
            types: PhantomData,
        }
    }
}

impl<I, O> Chain<I, O> {
    /// This chain, then `next`, which must take what the chain gives.
    #[must_use]
    pub fn then<X>(mut self, next: Node<O, X>) -> Chain<I, X> {
        self.children.push(next.node);
        Chain {
            children: self.children,
            types: PhantomData,
        }
    }

    /// Number of nodes in the chain.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether the chain is empty (never: a chain starts from a node).
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }
}

/// One folded branch of a [`Join`]: folds the branch's output (a payload carrying its type)
/// into the accumulator, or hands both back when the output is not of its type.
type Fold<P, A> = Box<dyn Fn(A, P) -> Result<Result<A, StepError>, (A, P)> + Send + Sync>;

/// The branches of a typed join: one input type `I`, branch outputs of different types,
/// each folded into the first branch's output `A` by a fold of its own. Made a node by
/// [`TypedBuilder::join`].
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{Graph, Join, NoClock, ParallelOptions};
/// use flujo_core::interp::Runner;
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Order { id: u64, tier: u32, note: &'static str }
/// flujo_core::payload! {
///     #[derive(Clone, Debug, PartialEq)]
///     enum Flow { Order(Order), Tier(u32), Note(&'static str) }
/// }
/// let g = Graph::<Flow, ()>::build_typed(|b| {
///     let same = b.task("same", |o: Order, _| Ok(o));
///     let tier = b.task("tier", |o: Order, _| Ok((o.id % 3) as u32 + 1));
///     let note = b.task("note", |o: Order, _| Ok(if o.id > 10 { "big" } else { "small" }));
///     let join = Join::new(same)
///         .fold(tier, |mut o: Order, t: u32| { o.tier = t; Ok(o) })
///         .fold(note, |mut o: Order, n: &'static str| { o.note = n; Ok(o) });
///     b.join("enrich", join, ParallelOptions::new())
/// })
/// .unwrap();
/// let mut runner = Runner::new(Default::default());
/// let input = Flow::from(Order { id: 11, tier: 0, note: "" });
/// let r = runner.run(&g, input, (), &NoClock, &Default::default());
/// assert_eq!(r.output.and_then(Flow::take::<Order>), Some(Order { id: 11, tier: 3, note: "big" }));
/// ```
pub struct Join<I, A, P> {
    children: Vec<NodeRef>,
    folds: Vec<Fold<P, A>>,
    /// The folded branches' output types, to refuse two of the same type.
    types: Vec<TypeId>,
    ambiguous: bool,
    io: PhantomData<fn(I) -> A>,
}

impl<I, A, P> fmt::Debug for Join<I, A, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Join")
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

impl<I, A: 'static, P: 'static> Join<I, A, P> {
    /// A join whose first branch gives the accumulator (its output is the join's output,
    /// with every other branch's output folded in).
    pub fn new(first: Node<I, A>) -> Self {
        Self {
            children: alloc::vec![first.node],
            folds: Vec::new(),
            types: Vec::new(),
            ambiguous: false,
            io: PhantomData,
        }
    }

    /// Adds a branch taking the join's input and giving an `X`, and how an `X` folds into
    /// the accumulator (an error fails the join). Each folded branch's `X` must be a
    /// different type (freezing fails with [`GraphRule::AmbiguousJoin`] otherwise).
    #[must_use]
    pub fn fold<X: 'static>(
        mut self,
        branch: Node<I, X>,
        fold: impl Fn(A, X) -> Result<A, StepError> + Send + Sync + 'static,
    ) -> Self
    where
        P: Carries<X>,
    {
        let id = TypeId::of::<X>();
        self.ambiguous |= self.types.contains(&id);
        self.types.push(id);
        self.children.push(branch.node);
        self.folds.push(Box::new(move |acc: A, next: P| {
            match Carries::<X>::take(next) {
                Ok(x) => Ok(fold(acc, x)),
                Err(next) => Err((acc, next)),
            }
        }));
        self
    }
}

/// A typed step lowered to the payload: project in, call, project out.
struct TypedStep<F, I, O> {
    f: F,
    types: PhantomData<fn(I) -> O>,
}

impl<P, C, I, O, F> Step<P, C> for TypedStep<F, I, O>
where
    P: Carries<I> + Carries<O>,
    F: Fn(I, &mut StepCx<'_, C>) -> Result<O, StepError> + Send + Sync,
{
    #[inline(always)]
    fn run(&self, input: P, cx: &mut StepCx<'_, C>) -> Result<P, StepError> {
        match <P as Carries<I>>::take(input) {
            Ok(i) => match (self.f)(i, cx) {
                Ok(o) => Ok(<P as Carries<O>>::wrap(o)),
                Err(e) => Err(e),
            },
            Err(_) => Err(wrong_payload()),
        }
    }
}

/// Where a typed map's splitter puts its items: a `T` each, bounded by the node's item
/// bound (the untyped [`Items`] underneath).
pub struct TypedItems<'i, 'b, P, T> {
    items: &'i mut Items<'b, P>,
    types: PhantomData<fn(T)>,
}

impl<P, T> fmt::Debug for TypedItems<'_, '_, P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedItems")
            .field("len", &self.items.len())
            .field("limit", &self.items.limit())
            .finish()
    }
}

impl<P: Carries<T>, T> TypedItems<'_, '_, P, T> {
    /// Adds an item; when the bound is reached the item is given back and the map fails.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        if self.items.len() >= self.items.limit {
            self.items.overflowed = true;
            return Err(item);
        }
        self.items.buf.push(P::wrap(item));
        Ok(())
    }

    /// Items pushed so far.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item was pushed.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The item bound.
    pub fn limit(&self) -> usize {
        self.items.limit()
    }
}

/// The typed graph builder: each node declares its input and output types, and connecting
/// nodes whose types do not meet is a compile error. It lowers every node to the untyped
/// [`GraphBuilder`] it wraps (see the module docs); [`Graph::build_typed`] makes one.
///
/// Node kinds and their typing:
///
/// | node | takes | gives |
/// |---|---|---|
/// | [`task`](Self::task) `Fn(I, &mut StepCx<C>) -> Result<O, StepError>` | `I` | `O` |
/// | [`sequence`](Self::sequence) of `a.then(b).then(c)` | `a`'s input | `c`'s output |
/// | [`parallel`](Self::parallel) of `Node<I, O>` branches, reduce `(O, O) -> Result<O, _>` | `I` | `O` |
/// | [`join`](Self::join) of branches `Node<I, A>`, `Node<I, X>`, .., each `X` folded `(A, X) -> Result<A, _>` | `I` | `A` |
/// | [`map`](Self::map): split `I` into `T` items (seed `A`), body `Node<T, U>`, reduce `(A, U) -> Result<A, _>` | `I` | `A` |
/// | [`switch`](Self::switch) over `&I`, arms `Node<I, O>` | `I` | `O` |
/// | [`loop_`](Self::loop_) of a body `Node<T, T>` | `T` | `T` |
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{Graph, NoClock, StepError};
/// use flujo_core::interp::{Runner, RunOptions};
///
/// flujo_core::payload! {
///     #[derive(Clone, Debug, PartialEq)]
///     pub enum Flow { Text(String), Words(usize), Score(f64) }
/// }
///
/// let g = Graph::<Flow, ()>::build_typed(|b| {
///     let count = b.task("count", |s: String, _| Ok(s.split_whitespace().count()));
///     let score = b.task("score", |n: usize, _| Ok(n as f64 / 2.0));
///     let check = b.task("check", |x: f64, _| {
///         if x.is_finite() { Ok(x) } else { Err(StepError::permanent("not finite")) }
///     });
///     b.sequence("pipeline", count.then(score).then(check))
/// })
/// .unwrap();
///
/// let mut runner = Runner::new(Default::default());
/// let r = runner.run(&g, Flow::from("a b c".to_string()), (), &NoClock, &RunOptions::default());
/// assert_eq!(r.output.and_then(Flow::take::<f64>), Some(1.5));
/// ```
///
/// # Refused connections
///
/// Each kind of connection whose types do not meet is a compile error. This graph, where
/// they all meet, builds:
///
/// ```
/// # use flujo_core::graph::{Graph, LoopOptions, MapOptions, ParallelOptions, StepError};
/// # flujo_core::payload! { #[derive(Clone)] enum Flow { Text(String), Len(usize), Flag(bool) } }
/// fn f() { let _ = Graph::<Flow, ()>::build_typed(|b| {
///     let len = b.task("len", |s: String, _| Ok::<_, StepError>(s.len()));
///     let chars = b.task("chars", |s: String, _| Ok::<_, StepError>(s.chars().count()));
///     let p = b.parallel("p", &[len, chars], |a, b| Ok(a.max(b)), ParallelOptions::new());
///     let split = b.task("split", |s: String, _| Ok::<_, StepError>(s));
///     let not = b.task("not", |x: bool, _| Ok::<_, StepError>(!x));
///     let m = b.map("m", |n: usize, _, items| { let _ = items.push(n > 0); Ok(0usize) }, not,
///           |n: usize, _: bool| Ok(n + 1), MapOptions::new().max_items(4));
///     let twice = b.task("twice", |n: usize, _| Ok::<_, StepError>(n * 2));
///     let lp = b.loop_("lp", twice, LoopOptions::new().max_iterations(3));
///     let sw = b.switch("sw", |s: &String, _| s.len() as u64, &[(0, split)], None);
///     b.sequence("s", sw.then(p).then(lp).then(m))
/// }); }
/// f();
/// ```
///
/// Parallel branches must all give one type:
///
/// ```compile_fail
/// # use flujo_core::graph::{Graph, LoopOptions, MapOptions, ParallelOptions, StepError};
/// # flujo_core::payload! { #[derive(Clone)] enum Flow { Text(String), Len(usize), Flag(bool) } }
/// fn f() { let _ = Graph::<Flow, ()>::build_typed(|b| {
///     let len = b.task("len", |s: String, _| Ok::<_, StepError>(s.len()));
///     let empty = b.task("empty", |s: String, _| Ok::<_, StepError>(s.is_empty()));
///     // String -> usize beside String -> bool: the branches give different types.
///     b.parallel("p", &[len, empty], |a, _| Ok(a), ParallelOptions::new())
/// }); }
/// ```
///
/// and the reducer must fold that type:
///
/// ```compile_fail
/// # use flujo_core::graph::{Graph, LoopOptions, MapOptions, ParallelOptions, StepError};
/// # flujo_core::payload! { #[derive(Clone)] enum Flow { Text(String), Len(usize), Flag(bool) } }
/// fn f() { let _ = Graph::<Flow, ()>::build_typed(|b| {
///     let len = b.task("len", |s: String, _| Ok::<_, StepError>(s.len()));
///     let chars = b.task("chars", |s: String, _| Ok::<_, StepError>(s.chars().count()));
///     // The reducer must fold the branches' type (usize), not a String.
///     b.parallel("p", &[len, chars], |a: String, _: String| Ok(a), ParallelOptions::new())
/// }); }
/// ```
///
/// A map's splitter must push what its body takes:
///
/// ```compile_fail
/// # use flujo_core::graph::{Graph, LoopOptions, MapOptions, ParallelOptions, StepError};
/// # flujo_core::payload! { #[derive(Clone)] enum Flow { Text(String), Len(usize), Flag(bool) } }
/// fn f() { let _ = Graph::<Flow, ()>::build_typed(|b| {
///     let not = b.task("not", |x: bool, _| Ok::<_, StepError>(!x));
///     // The splitter pushes Strings, the body takes bools.
///     b.map("m", |s: String, _, items| { let _ = items.push(s); Ok(0usize) }, not,
///           |n: usize, _: bool| Ok(n + 1), MapOptions::new().max_items(4))
/// }); }
/// ```
///
/// A switch's arms must all take the switch's input:
///
/// ```compile_fail
/// # use flujo_core::graph::{Graph, LoopOptions, MapOptions, ParallelOptions, StepError};
/// # flujo_core::payload! { #[derive(Clone)] enum Flow { Text(String), Len(usize), Flag(bool) } }
/// fn f() { let _ = Graph::<Flow, ()>::build_typed(|b| {
///     let len = b.task("len", |s: String, _| Ok::<_, StepError>(s.len()));
///     let twice = b.task("twice", |n: usize, _| Ok::<_, StepError>(n * 2));
///     // Arms take String and usize: one switch input cannot feed both.
///     b.switch("sw", |s: &String, _| s.len() as u64, &[(0, len), (1, twice)], None)
/// }); }
/// ```
///
/// A loop's body must give what it takes:
///
/// ```compile_fail
/// # use flujo_core::graph::{Graph, LoopOptions, MapOptions, ParallelOptions, StepError};
/// # flujo_core::payload! { #[derive(Clone)] enum Flow { Text(String), Len(usize), Flag(bool) } }
/// fn f() { let _ = Graph::<Flow, ()>::build_typed(|b| {
///     let len = b.task("len", |s: String, _| Ok::<_, StepError>(s.len()));
///     // A loop's body feeds itself: String -> usize cannot.
///     b.loop_("lp", len, LoopOptions::new().max_iterations(3))
/// }); }
/// ```
///
/// (A sequence's refusal is the example of [`Node`].)
pub struct TypedBuilder<'a, P, C> {
    b: GraphBuilder<'a, P, C>,
}

impl<P, C> fmt::Debug for TypedBuilder<'_, P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TypedBuilder").field(&self.b).finish()
    }
}

impl<'a, P, C> TypedBuilder<'a, P, C> {
    /// A typed builder whose nodes live in `bump` until [`freeze`](Self::freeze).
    pub fn new_in(bump: &'a super::Bump) -> Self {
        Self {
            b: GraphBuilder::new_in(bump),
        }
    }

    /// The untyped builder underneath, for what the typed one does not offer (an untyped
    /// node joins the typed graph through [`Node::assume`]).
    pub fn untyped(&mut self) -> &mut GraphBuilder<'a, P, C> {
        &mut self.b
    }

    /// Validates every rule and flattens the graph rooted at `root`.
    pub fn freeze<I, O>(self, root: Node<I, O>) -> Result<Graph<P, C>, GraphError> {
        self.b.freeze(root.node)
    }

    /// A task running `f: I -> O`, without policies (the fast path).
    ///
    /// A step whose result type the compiler cannot infer (say, one that only ever returns
    /// `Err`) names it: `Ok::<Event, StepError>(..)`.
    pub fn task<I, O, F>(&mut self, name: &str, f: F) -> Node<I, O>
    where
        P: Carries<I> + Carries<O> + 'static,
        C: 'static,
        I: 'static,
        O: 'static,
        F: Fn(I, &mut StepCx<'_, C>) -> Result<O, StepError> + Send + Sync + 'static,
    {
        self.task_with(name, f, TaskConfig::new())
    }

    /// A task running `f: I -> O` with the policies of `cfg`.
    ///
    /// The policies are the untyped ones (their processors, validators and default output
    /// see the payload); a cacheable typed task keys on its input alone with
    /// [`TaskConfig::cacheable_input`], and a fallback is given as
    /// `.fallback(other.node())` where `other: Node<I, O>`.
    pub fn task_with<I, O, F, V>(
        &mut self,
        name: &str,
        f: F,
        cfg: TaskConfig<P, C, V>,
    ) -> Node<I, O>
    where
        P: Carries<I> + Carries<O> + 'static,
        C: 'static,
        I: 'static,
        O: 'static,
        F: Fn(I, &mut StepCx<'_, C>) -> Result<O, StepError> + Send + Sync + 'static,
        V: TypedValidator<P, C>,
    {
        let step = TypedStep {
            f,
            types: PhantomData,
        };
        Node::assume(self.b.step(name, step, cfg))
    }

    /// A sequence of a chain (`a.then(b).then(c)`): each node's output is the next one's
    /// input; the first failure stops it.
    pub fn sequence<I, O>(&mut self, name: &str, chain: impl Into<Chain<I, O>>) -> Node<I, O> {
        Node::assume(self.b.sequence(name, &chain.into().children))
    }

    /// A parallel node: every branch gets the input; the outputs of the successful branches
    /// are folded with `reduce` in declaration order, the first one as the initial
    /// accumulator. A reducer's error fails the node (classified by the error).
    pub fn parallel<I, O, R>(
        &mut self,
        name: &str,
        branches: &[Node<I, O>],
        reduce: R,
        opts: ParallelOptions<C>,
    ) -> Node<I, O>
    where
        P: Carries<O> + 'static,
        O: 'static,
        R: Fn(O, O) -> Result<O, StepError> + Send + Sync + 'static,
    {
        let nodes: Vec<NodeRef> = branches.iter().map(|n| n.node).collect();
        let reduce = move |acc: P, next: P| -> Result<P, StepError> {
            match (Carries::<O>::take(acc), Carries::<O>::take(next)) {
                (Ok(a), Ok(n)) => reduce(a, n).map(P::wrap),
                _ => Err(wrong_payload()),
            }
        };
        Node::assume(self.b.parallel_fallible(name, &nodes, reduce, opts))
    }

    /// A join: parallel branches on one input whose outputs have different types, each
    /// folded into the first branch's output by its own fold (see [`Join`]). Every branch
    /// is needed, so a join's failure strategy is always propagate (`opts`'s is ignored);
    /// its other options (merge, width) apply as for [`parallel`](Self::parallel).
    pub fn join<I, A>(
        &mut self,
        name: &str,
        join: Join<I, A, P>,
        opts: ParallelOptions<C>,
    ) -> Node<I, A>
    where
        P: Carries<A> + 'static,
        A: 'static,
    {
        if join.ambiguous {
            self.b.fail_rule(name, GraphRule::AmbiguousJoin);
        }
        let folds = join.folds;
        let reduce = move |acc: P, next: P| -> Result<P, StepError> {
            let Ok(mut acc) = Carries::<A>::take(acc) else {
                return Err(wrong_payload());
            };
            let mut next = next;
            for fold in &folds {
                match fold(acc, next) {
                    Ok(folded) => return folded.map(<P as Carries<A>>::wrap),
                    Err((a, n)) => (acc, next) = (a, n),
                }
            }
            Err(wrong_payload())
        };
        let opts = opts.failure(FailureStrategy::Propagate);
        Node::assume(self.b.parallel_fallible(name, &join.children, reduce, opts))
    }

    /// A map: `split` turns the input into items (pushed into [`TypedItems`]) and returns the
    /// reduce's initial accumulator; `body` runs per item; its outputs fold with `reduce` in
    /// item order. A splitter's or reducer's error fails the node (classified by the error).
    pub fn map<I, T, U, A, S, R>(
        &mut self,
        name: &str,
        split: S,
        body: Node<T, U>,
        reduce: R,
        opts: MapOptions<C>,
    ) -> Node<I, A>
    where
        P: Carries<I> + Carries<T> + Carries<U> + Carries<A> + 'static,
        C: 'static,
        I: 'static,
        T: 'static,
        U: 'static,
        A: 'static,
        S: Fn(I, &C, &mut TypedItems<'_, '_, P, T>) -> Result<A, StepError> + Send + Sync + 'static,
        R: Fn(A, U) -> Result<A, StepError> + Send + Sync + 'static,
    {
        let split = move |input: P, ctx: &C, items: &mut Items<'_, P>| -> Result<P, StepError> {
            let Ok(i) = Carries::<I>::take(input) else {
                return Err(wrong_payload());
            };
            let mut typed = TypedItems {
                items,
                types: PhantomData,
            };
            split(i, ctx, &mut typed).map(<P as Carries<A>>::wrap)
        };
        let reduce = move |acc: P, out: P| -> Result<P, StepError> {
            match (Carries::<A>::take(acc), Carries::<U>::take(out)) {
                (Ok(a), Ok(u)) => reduce(a, u).map(<P as Carries<A>>::wrap),
                _ => Err(wrong_payload()),
            }
        };
        Node::assume(self.b.map_fallible(name, split, body.node, reduce, opts))
    }

    /// A switch: `selector` picks the arm with its key from the input; `default` runs when
    /// none matches (without one, no match fails the run with an error naming the key).
    /// Every arm takes the switch's input and gives its output.
    pub fn switch<I, O, S>(
        &mut self,
        name: &str,
        selector: S,
        arms: &[(u64, Node<I, O>)],
        default: Option<Node<I, O>>,
    ) -> Node<I, O>
    where
        P: Carries<I> + 'static,
        C: 'static,
        I: 'static,
        S: Fn(&I, &C) -> u64 + Send + Sync + 'static,
    {
        let arms: Vec<(u64, NodeRef)> = arms.iter().map(|(k, n)| (*k, n.node)).collect();
        // A payload without an `I` (a wrong run input) matches no arm: the default arm's
        // step then fails with `WRONG_PAYLOAD`, or, without one, the run fails naming the key.
        let selector = move |p: &P, ctx: &C| match Carries::<I>::peek(p) {
            Some(i) => selector(i, ctx),
            None => u64::MAX,
        };
        Node::assume(
            self.b
                .switch(name, selector, &arms, default.map(|d| d.node)),
        )
    }

    /// A loop: `body` runs on its own output until the exit predicate of `opts` holds (it
    /// sees the body's output as a `T`) or the bound is hit.
    pub fn loop_<T>(&mut self, name: &str, body: Node<T, T>, opts: LoopOptions<T, C>) -> Node<T, T>
    where
        P: Carries<T> + 'static,
        C: 'static,
        T: 'static,
    {
        let mut lowered = LoopOptions::<P, C>::new();
        if let Some(bound) = opts.max_iterations {
            lowered = lowered.max_iterations(bound);
        }
        if let Some(exit) = opts.exit {
            // A payload without a `T` cannot come out of a typed body; stop the loop on it.
            lowered = lowered.until(move |p: &P, ctx: &C, n| match Carries::<T>::peek(p) {
                Some(t) => exit(t, ctx, n),
                None => true,
            });
        }
        Node::assume(self.b.loop_(name, body.node, lowered))
    }
}

impl<P, C, V> TaskConfig<P, C, V> {
    /// Caches a typed task's outputs by a key over `fingerprint` and the canonical encoding
    /// of its input `I` alone (not the whole payload): only the input type needs
    /// [`CanonicalEncode`]. A payload without an `I` (a wrong run input, on which the typed
    /// step fails anyway) is keyed by a marker of its own, `(u64::MAX, "flujo:wrong-payload")`.
    #[must_use]
    pub fn cacheable_input<I>(mut self, fingerprint: StepFingerprint) -> Self
    where
        P: Carries<I>,
        I: CanonicalEncode,
    {
        self.cache = Some(CacheSlot {
            fingerprint,
            key: |fingerprint, input: &P| match Carries::<I>::peek(input) {
                Some(i) => CacheKey::new(fingerprint, i),
                None => CacheKey::new(fingerprint, &(u64::MAX, "flujo:wrong-payload")),
            },
        });
        self
    }
}

impl<P, C> TaskConfig<P, C> {
    /// Adds a validator of a typed task's output `O` (what [`validate`](Self::validate) is
    /// for the payload): it runs where `validate`'s would, on the step's output, and like it
    /// is compiled into the step when it is the first validator.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::graph::{Graph, NoClock, StepError, TaskConfig};
    /// use flujo_core::interp::{Outcome, Runner};
    /// flujo_core::payload! { #[derive(Clone, Debug)] enum Flow { Text(String), Len(usize) } }
    /// let g = Graph::<Flow, ()>::build_typed(|b| {
    ///     let cfg = TaskConfig::new().validate_output(|n: &usize, _| {
    ///         if *n > 0 { Ok(()) } else { Err(StepError::validation("empty")) }
    ///     });
    ///     b.task_with("len", |s: String, _| Ok(s.len()), cfg)
    /// })
    /// .unwrap();
    /// let mut runner = Runner::new(Default::default());
    /// let r = runner.run(&g, Flow::from(String::new()), (), &NoClock, &Default::default());
    /// assert_eq!(r.outcome, Outcome::Failed);
    /// ```
    #[must_use]
    pub fn validate_output<O, F>(
        self,
        check: F,
    ) -> TaskConfig<P, C, impl Fn(&P, &C) -> Result<(), StepError> + Send + Sync + 'static>
    where
        P: Carries<O> + 'static,
        C: 'static,
        O: 'static,
        F: Fn(&O, &C) -> Result<(), StepError> + Send + Sync + 'static,
    {
        // A typed task's output always carries an `O`; a payload without one (an untyped
        // step's) has nothing of this validator's type to check.
        self.validate(move |p: &P, ctx: &C| match Carries::<O>::peek(p) {
            Some(o) => check(o, ctx),
            None => Ok(()),
        })
    }
}

impl<P, C> Graph<P, C> {
    /// Builds a graph with the typed builder in a fresh arena: `f` describes it and returns
    /// the root (see [`TypedBuilder`]).
    pub fn build_typed<I, O>(
        f: impl FnOnce(&mut TypedBuilder<'_, P, C>) -> Node<I, O>,
    ) -> Result<Self, GraphError> {
        let bump = super::Bump::new();
        let mut builder = TypedBuilder::new_in(&bump);
        let root = f(&mut builder);
        builder.freeze(root)
    }
}
