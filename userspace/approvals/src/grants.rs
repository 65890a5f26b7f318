//! Per-session allow set for approvals with [`Scope::Session`]: once a person approved a
//! normalized statement for the session, the same normalized statement passes without a
//! new request until the session ends. Owned by one session; never shared.

use std::collections::HashSet;

use crate::model::{Decision, Scope};

/// Default cap on remembered grants per session.
pub const DEFAULT_MAX_GRANTS: usize = 1024;

/// The normalized statements approved for the rest of one session.
///
/// Bounded: once full, further session grants are not remembered (the statement is simply
/// held again next time), which fails closed.
#[derive(Debug, Clone)]
pub struct SessionGrants {
    allowed: HashSet<String>,
    max: usize,
}

impl Default for SessionGrants {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionGrants {
    /// An empty set with the default cap ([`DEFAULT_MAX_GRANTS`]).
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity_limit(DEFAULT_MAX_GRANTS)
    }

    /// An empty set remembering at most `max` statements.
    #[must_use]
    pub fn with_capacity_limit(max: usize) -> Self {
        SessionGrants {
            allowed: HashSet::new(),
            max,
        }
    }

    /// True if `normalized` was approved for this session.
    #[must_use]
    pub fn is_granted(&self, normalized: &str) -> bool {
        self.allowed.contains(normalized)
    }

    /// Records the effect of a decision on the statement it was about: only
    /// `Approved { scope: Session }` adds a grant. Returns true if a grant was added or
    /// already present.
    pub fn apply(&mut self, decision: &Decision, normalized: &str) -> bool {
        match decision {
            Decision::Approved {
                scope: Scope::Session,
                ..
            } => self.grant(normalized),
            _ => false,
        }
    }

    /// Adds a grant. Returns false if the set is full (grant not remembered).
    pub fn grant(&mut self, normalized: &str) -> bool {
        if self.allowed.contains(normalized) {
            return true;
        }
        if self.allowed.len() >= self.max {
            tracing::warn!(
                limit = self.max,
                "session grant limit reached; statement will be held again"
            );
            return false;
        }
        self.allowed.insert(normalized.to_owned());
        true
    }

    /// Number of grants.
    #[must_use]
    pub fn len(&self) -> usize {
        self.allowed.len()
    }

    /// True if no grants exist.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approved(scope: Scope) -> Decision {
        Decision::Approved {
            approver: "a".into(),
            reason: None,
            scope,
        }
    }

    #[test]
    fn only_session_scope_grants() {
        let mut g = SessionGrants::new();
        assert!(!g.apply(&approved(Scope::Once), "DELETE FROM t WHERE id = ?"));
        assert!(!g.is_granted("DELETE FROM t WHERE id = ?"));
        let denied = Decision::Denied {
            approver: "a".into(),
            reason: None,
        };
        assert!(!g.apply(&denied, "x"));
        assert!(g.apply(&approved(Scope::Session), "DELETE FROM t WHERE id = ?"));
        assert!(g.is_granted("DELETE FROM t WHERE id = ?"));
        assert!(!g.is_granted("DELETE FROM u WHERE id = ?"));
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn bounded() {
        let mut g = SessionGrants::with_capacity_limit(2);
        assert!(g.grant("a"));
        assert!(g.grant("b"));
        assert!(g.grant("a"));
        assert!(!g.grant("c"));
        assert!(!g.is_granted("c"));
    }
}
