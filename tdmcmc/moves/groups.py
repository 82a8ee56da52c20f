"""Per-batch choice of an exchangeable group and of slots within it (shared by the group moves)."""

from __future__ import annotations

import numpy as np

from tdmcmc.randomness import RandomSource
from tdmcmc.state import SlotLayout


class GroupTable:
    """The layout's exchangeable groups as a padded (groups, max members) index table."""

    def __init__(self, layout: SlotLayout) -> None:
        groups = layout.group_members()
        if not groups:
            raise ValueError("the layout has no exchangeable group with two or more slots")
        for members in groups:
            if len({layout.slot_dims[j] for j in members}) != 1:
                raise ValueError(f"slots {list(members)} of one group differ in parameter dimension")
        width = max(len(m) for m in groups)
        self.members = np.full((len(groups), width), -1)
        for g, m in enumerate(groups):
            self.members[g, : len(m)] = m
        self.valid = self.members >= 0

    @property
    def n_groups(self) -> int:
        return len(self.members)

    def choose(self, src: RandomSource) -> tuple[np.ndarray, np.ndarray]:
        """A uniformly chosen group per batch element: (member slots (B, W) padded with 0, valid)."""
        g = src.integers(self.n_groups)
        return np.maximum(self.members[g], 0), self.valid[g]
