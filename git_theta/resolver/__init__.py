"""The interactive conflict resolver: at a terminal, the user picks a strategy per conflicting
parameter, per name pattern, or for all that remain.

Used by the merge driver when no strategy is configured and a terminal is attached, and by
`git theta resolve PATH --interactive`.
"""

from __future__ import annotations

from git_theta.resolver.session import resolve_interactively
from git_theta.resolver.terminal import Terminal, open_terminal

__all__ = ["Terminal", "open_terminal", "resolve_interactively"]
