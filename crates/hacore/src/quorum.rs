//! Raft quorum arithmetic for etcd.
//!
//! Only voting members count: learners neither vote nor count toward the
//! quorum. With `n` voters the quorum is `n / 2 + 1` and the cluster tolerates
//! `n - quorum` failed voters.

use serde::Serialize;

/// Votes needed to commit with `voters` voting members (0 for an empty cluster).
pub const fn quorum(voters: usize) -> usize {
    if voters == 0 { 0 } else { voters / 2 + 1 }
}

/// How many voters may fail while the rest still form a quorum.
pub const fn tolerance(voters: usize) -> usize {
    voters - quorum(voters)
}

/// Voting membership with health, as far as it is known.
///
/// `unknown` voters are those whose health could not be established; the
/// projection methods answer for the worst case (they are down) and the best
/// case (they are up), so callers can tell "safe", "unsafe" and "cannot tell"
/// apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Membership {
    /// Voting members.
    pub voters: usize,
    /// Voters known healthy.
    pub healthy: usize,
    /// Voters whose health is not known.
    pub unknown: usize,
    /// Non-voting learners.
    pub learners: usize,
}

/// The outcome of projecting a change onto a membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Projection {
    /// Voters after the change.
    pub voters: usize,
    /// Quorum after the change.
    pub quorum: usize,
    /// Healthy voters after the change, worst case.
    pub healthy_min: usize,
    /// Healthy voters after the change, best case.
    pub healthy_max: usize,
}

/// Three-valued answer: a projection is safe, unsafe, or undecidable from
/// what is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Safety {
    /// Quorum holds even in the worst case.
    Safe,
    /// Quorum is lost even in the best case.
    Unsafe,
    /// Quorum holds only if voters of unknown health are in fact healthy.
    Unknown,
}

impl Projection {
    /// Whether quorum holds after the change.
    pub fn safety(&self) -> Safety {
        if self.voters == 0 {
            Safety::Unsafe
        } else if self.healthy_min >= self.quorum {
            Safety::Safe
        } else if self.healthy_max >= self.quorum {
            Safety::Unknown
        } else {
            Safety::Unsafe
        }
    }
}

impl Membership {
    /// Quorum of the current voters.
    pub fn quorum(&self) -> usize {
        quorum(self.voters)
    }

    /// Failures tolerated by the current voters.
    pub fn tolerance(&self) -> usize {
        tolerance(self.voters)
    }

    /// Voters that are down now (known unhealthy).
    pub fn unhealthy(&self) -> usize {
        self.voters - self.healthy - self.unknown
    }

    /// Take voters down temporarily (reboot, upgrade, shutdown): membership
    /// stays, health drops. `healthy_down` and `unknown_down` say how many of
    /// the voters taken down are healthy or of unknown health (those already
    /// down change nothing).
    pub fn take_down(&self, healthy_down: usize, unknown_down: usize) -> Projection {
        Projection {
            voters: self.voters,
            quorum: self.quorum(),
            healthy_min: self.healthy.saturating_sub(healthy_down),
            healthy_max: (self.healthy + self.unknown).saturating_sub(healthy_down + unknown_down),
        }
    }

    /// Remove voters from the membership for good (`member remove`).
    pub fn remove(
        &self,
        healthy_removed: usize,
        unknown_removed: usize,
        down_removed: usize,
    ) -> Projection {
        let voters = self
            .voters
            .saturating_sub(healthy_removed + unknown_removed + down_removed);
        Projection {
            voters,
            quorum: quorum(voters),
            healthy_min: self.healthy.saturating_sub(healthy_removed),
            healthy_max: (self.healthy + self.unknown)
                .saturating_sub(healthy_removed + unknown_removed),
        }
    }

    /// Add a voter that is not up yet (a join without learner mode, during the
    /// window before the new member starts).
    pub fn add_unstarted_voter(&self) -> Projection {
        let voters = self.voters + 1;
        Projection {
            voters,
            quorum: quorum(voters),
            healthy_min: self.healthy,
            healthy_max: self.healthy + self.unknown,
        }
    }

    /// Promote a caught-up learner (or a newly started voter) to voter.
    pub fn add_healthy_voter(&self) -> Projection {
        let voters = self.voters + 1;
        Projection {
            voters,
            quorum: quorum(voters),
            healthy_min: self.healthy + 1,
            healthy_max: self.healthy + self.unknown + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_table() {
        // n: 0 1 2 3 4 5 6 7
        let q: Vec<usize> = (0..8).map(quorum).collect();
        let f: Vec<usize> = (0..8).map(tolerance).collect();
        assert_eq!(q, [0, 1, 2, 2, 3, 3, 4, 4]);
        assert_eq!(f, [0, 0, 0, 1, 1, 2, 2, 3]);
    }

    #[test]
    fn two_voters_are_worse_than_one() {
        let two = Membership {
            voters: 2,
            healthy: 2,
            unknown: 0,
            learners: 0,
        };
        assert_eq!(two.take_down(1, 0).safety(), Safety::Unsafe);
        let three = Membership {
            voters: 3,
            healthy: 3,
            unknown: 0,
            learners: 0,
        };
        assert_eq!(three.take_down(1, 0).safety(), Safety::Safe);
        assert_eq!(three.take_down(2, 0).safety(), Safety::Unsafe);
    }

    #[test]
    fn unknown_health_is_undecided_not_safe() {
        let m = Membership {
            voters: 3,
            healthy: 1,
            unknown: 2,
            learners: 0,
        };
        // Take a healthy one down: 0..2 healthy remain, quorum 2.
        assert_eq!(m.take_down(1, 0).safety(), Safety::Unknown);
        // Take an unknown one down: 1..2 healthy remain.
        assert_eq!(m.take_down(0, 1).safety(), Safety::Unknown);
        let m = Membership {
            voters: 3,
            healthy: 2,
            unknown: 1,
            learners: 0,
        };
        assert_eq!(m.take_down(0, 1).safety(), Safety::Safe);
    }

    #[test]
    fn growing_one_to_two_without_learner_is_the_risk_window() {
        let one = Membership {
            voters: 1,
            healthy: 1,
            unknown: 0,
            learners: 0,
        };
        assert_eq!(one.add_unstarted_voter().safety(), Safety::Unsafe);
        assert_eq!(one.add_healthy_voter().safety(), Safety::Safe);
    }

    #[test]
    fn removing_a_dead_member_restores_tolerance() {
        let m = Membership {
            voters: 3,
            healthy: 2,
            unknown: 0,
            learners: 0,
        };
        let p = m.remove(0, 0, 1);
        assert_eq!((p.voters, p.quorum, p.healthy_min), (2, 2, 2));
        assert_eq!(p.safety(), Safety::Safe);
        // Removing the last member is never safe.
        let one = Membership {
            voters: 1,
            healthy: 1,
            unknown: 0,
            learners: 0,
        };
        assert_eq!(one.remove(1, 0, 0).safety(), Safety::Unsafe);
    }
}
