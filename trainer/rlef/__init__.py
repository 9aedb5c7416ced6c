"""RLEF: online reinforcement learning from execution feedback, on the agent's own episodes."""
