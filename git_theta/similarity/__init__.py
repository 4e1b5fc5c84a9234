"""Task similarity: task vectors of revisions (checkpoint minus base) compared without
leaving their stored structure (terms.py), ranked (ranking.py), printed (render.py)."""
