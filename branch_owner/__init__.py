"""branch_owner: branch profile, review queue of helper tasks, customer reviews."""
