"""The fault campaign, in the spirit of Jepsen: a workload whose every write is recorded with its
outcome, a nemesis that injects every kind of fault in a seeded round-robin, and a checker that
reads every copy at the end. ``make chaos`` runs a long one; ``make test`` a short one."""
