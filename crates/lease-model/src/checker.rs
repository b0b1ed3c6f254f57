//! A small explicit-state model checker: breadth-first search over every reachable state.
//!
//! Why not `stateright`: its `eventually` properties only catch runs that *end* without
//! reaching the goal, not runs that cycle forever; a liveness check under fairness needs the
//! whole state graph. This checker keeps it: safety properties are checked on every state as
//! it is discovered (breadth-first, so a counterexample is a shortest one), and liveness is
//! checked afterwards by walking the graph backwards from the goal states along *fair* steps
//! only — a reachable state from which no goal is reachable without the environment's help
//! (a fault, a user's cancel) is a run that can never finish. With finitely many states, "a
//! goal is reachable from everywhere by fair steps" is exactly "every run under strong
//! fairness of those steps reaches a goal".

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Debug;
use std::hash::Hash;

/// A finite transition system with properties to check.
pub trait Model {
    /// A global state: everything that can differ between two moments.
    type State: Clone + Eq + Hash + Debug;
    /// A step some actor may take.
    type Action: Clone + Debug;

    /// Where runs start.
    fn init_states(&self) -> Vec<Self::State>;
    /// The steps enabled in `state`.
    fn actions(&self, state: &Self::State, out: &mut Vec<Self::Action>);
    /// The state after `action`; `None` if the action changes nothing.
    fn next_state(&self, state: &Self::State, action: &Self::Action) -> Option<Self::State>;
    /// Safety properties: each must hold in every reachable state.
    fn invariants(&self) -> Vec<Invariant<Self::State>>;
    /// Liveness: a goal state must stay reachable from every reachable state.
    fn goal(&self, state: &Self::State) -> bool;
    /// Whether liveness may count on `action`: the system's own steps, which a fair
    /// scheduler takes eventually. Faults and other environment choices (a crash, a lost
    /// reply, a user's cancel) may never happen, so no run may need them to finish.
    fn fair(&self, action: &Self::Action) -> bool;
}

/// A named safety property.
pub struct Invariant<S> {
    /// What it promises, in words.
    pub name: &'static str,
    /// Whether a state keeps the promise.
    holds: Box<dyn Fn(&S) -> bool + Send + Sync>,
}

impl<S> Invariant<S> {
    /// The property `name`, kept by the states for which `holds` is true.
    pub fn new(name: &'static str, holds: impl Fn(&S) -> bool + Send + Sync + 'static) -> Self {
        Self {
            name,
            holds: Box::new(holds),
        }
    }

    /// Whether `state` keeps it.
    pub fn holds(&self, state: &S) -> bool {
        (self.holds)(state)
    }
}

impl<S> Debug for Invariant<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invariant")
            .field("name", &self.name)
            .finish()
    }
}

/// A broken property and the shortest run that breaks it.
#[derive(Debug, Clone)]
pub struct Counterexample<M: Model> {
    /// Which property.
    pub property: &'static str,
    /// The run: the initial state, then each action and the state it led to.
    pub trace: Vec<(Option<M::Action>, M::State)>,
}

/// What a check found.
#[derive(Debug, Clone)]
pub struct Report<M: Model> {
    /// Distinct states reached.
    pub states: usize,
    /// Transitions between them, self-loops excluded.
    pub transitions: usize,
    /// The longest shortest path from an initial state.
    pub depth: usize,
    /// The first broken property, if any.
    pub counterexample: Option<Counterexample<M>>,
}

/// How far a check got.
struct Explored {
    states: usize,
    transitions: usize,
    depth: usize,
}

impl<M: Model> Report<M> {
    /// A check that stopped at a broken `property`, with the `trace` that breaks it.
    fn broken(
        explored: Explored,
        property: &'static str,
        trace: Vec<(Option<M::Action>, M::State)>,
    ) -> Self {
        Self {
            states: explored.states,
            transitions: explored.transitions,
            depth: explored.depth,
            counterexample: Some(Counterexample { property, trace }),
        }
    }
}

/// Why a check stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyStates(pub usize);

/// Explores every state reachable from `model`'s initial states, up to `max_states`.
pub fn check<M: Model>(model: &M, max_states: usize) -> Result<Report<M>, TooManyStates> {
    let invariants = model.invariants();
    let mut states: Vec<M::State> = Vec::new();
    let mut index: HashMap<M::State, u32> = HashMap::new();
    // How each state was first reached: (parent, action, depth).
    let mut parent: Vec<Option<(u32, M::Action)>> = Vec::new();
    let mut depth: Vec<u32> = Vec::new();
    let mut edges: Vec<(u32, u32)> = Vec::new();

    let violated = |state: &M::State| invariants.iter().find(|inv| !inv.holds(state));

    for init in model.init_states() {
        if let Entry::Vacant(slot) = index.entry(init.clone()) {
            let id = to_id(states.len());
            slot.insert(id);
            if let Some(inv) = violated(&init) {
                let trace = vec![(None, init)];
                return Ok(Report::broken(
                    Explored {
                        states: states.len() + 1,
                        transitions: 0,
                        depth: 0,
                    },
                    inv.name,
                    trace,
                ));
            }
            states.push(init);
            parent.push(None);
            depth.push(0);
        }
    }

    let mut actions = Vec::new();
    let mut transitions = 0;
    let mut cursor = 0;
    while cursor < states.len() {
        let from = to_id(cursor);
        actions.clear();
        model.actions(&states[cursor], &mut actions);
        for action in &actions {
            let Some(next) = model.next_state(&states[cursor], action) else {
                continue;
            };
            if next == states[cursor] {
                continue;
            }
            transitions += 1;
            let to = match index.entry(next) {
                Entry::Occupied(slot) => *slot.get(),
                Entry::Vacant(slot) => {
                    if states.len() >= max_states {
                        return Err(TooManyStates(states.len()));
                    }
                    let id = to_id(states.len());
                    let next = slot.key().clone();
                    slot.insert(id);
                    let broken = violated(&next).map(|inv| inv.name);
                    states.push(next);
                    parent.push(Some((from, action.clone())));
                    depth.push(depth[cursor] + 1);
                    if let Some(name) = broken {
                        let trace = trace_to::<M>(&states, &parent, id);
                        let d = depth[id as usize] as usize;
                        return Ok(Report::broken(
                            Explored {
                                states: states.len(),
                                transitions,
                                depth: d,
                            },
                            name,
                            trace,
                        ));
                    }
                    id
                }
            };
            if model.fair(action) {
                edges.push((from, to));
            }
        }
        cursor += 1;
    }

    let max_depth = depth.iter().copied().max().unwrap_or(0) as usize;
    // Liveness: walk backwards from every goal state.
    let mut incoming: Vec<Vec<u32>> = vec![Vec::new(); states.len()];
    for &(from, to) in &edges {
        incoming[to as usize].push(from);
    }
    let mut can_finish = vec![false; states.len()];
    let mut stack: Vec<u32> = Vec::new();
    for (id, state) in states.iter().enumerate() {
        if model.goal(state) {
            can_finish[id] = true;
            stack.push(to_id(id));
        }
    }
    while let Some(id) = stack.pop() {
        for &pred in &incoming[id as usize] {
            if !can_finish[pred as usize] {
                can_finish[pred as usize] = true;
                stack.push(pred);
            }
        }
    }
    // The shallowest stuck state gives the shortest counterexample.
    let stuck = (0..states.len())
        .filter(|&id| !can_finish[id])
        .min_by_key(|&id| depth[id]);
    let counterexample = stuck.map(|id| Counterexample {
        property: "liveness: every job reaches a terminal state",
        trace: trace_to::<M>(&states, &parent, to_id(id)),
    });
    Ok(Report {
        states: states.len(),
        transitions,
        depth: max_depth,
        counterexample,
    })
}

fn to_id(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn trace_to<M: Model>(
    states: &[M::State],
    parent: &[Option<(u32, M::Action)>],
    mut id: u32,
) -> Vec<(Option<M::Action>, M::State)> {
    let mut trace = Vec::new();
    loop {
        let state = states[id as usize].clone();
        match &parent[id as usize] {
            Some((from, action)) => {
                trace.push((Some(action.clone()), state));
                id = *from;
            }
            None => {
                trace.push((None, state));
                break;
            }
        }
    }
    trace.reverse();
    trace
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter that may go up to 3 and, in the broken variant, get stuck at 2.
    #[derive(Debug)]
    struct Counter {
        trap: bool,
        limit: u8,
    }

    impl Model for Counter {
        type State = (u8, bool);
        type Action = u8;
        fn init_states(&self) -> Vec<(u8, bool)> {
            vec![(0, false)]
        }
        fn actions(&self, _: &(u8, bool), out: &mut Vec<u8>) {
            out.extend([0, 1]);
        }
        fn next_state(&self, s: &(u8, bool), a: &u8) -> Option<(u8, bool)> {
            match (s, a) {
                ((n, false), 0) if *n < 3 => Some((n + 1, false)),
                ((2, false), 1) if self.trap => Some((2, true)),
                _ => None,
            }
        }
        fn invariants(&self) -> Vec<Invariant<(u8, bool)>> {
            vec![Invariant::new("below the limit", |s: &(u8, bool)| s.0 <= 3)]
        }
        fn goal(&self, s: &(u8, bool)) -> bool {
            s.0 >= self.limit
        }
        fn fair(&self, a: &u8) -> bool {
            *a == 0
        }
    }

    #[test]
    fn a_correct_model_passes_and_counts_its_states() {
        let r = check(
            &Counter {
                trap: false,
                limit: 3,
            },
            100,
        )
        .unwrap();
        assert_eq!((r.states, r.transitions, r.depth), (4, 3, 3));
        assert!(r.counterexample.is_none());
    }

    #[test]
    fn a_state_that_can_never_finish_is_a_liveness_counterexample() {
        let r = check(
            &Counter {
                trap: true,
                limit: 3,
            },
            100,
        )
        .unwrap();
        let cex = r.counterexample.unwrap();
        assert!(cex.property.starts_with("liveness"));
        assert_eq!(cex.trace.last().unwrap().1, (2, true));
        assert_eq!(cex.trace.len(), 4);
    }

    #[test]
    fn the_state_bound_is_reported() {
        assert_eq!(
            check(
                &Counter {
                    trap: false,
                    limit: 3
                },
                2
            )
            .unwrap_err(),
            TooManyStates(2)
        );
    }
}
