"""fixloop's Textual TUI: a view over the agent's typed event stream.

Nothing here talks to a model or a sandbox directly: every action goes through
`agent.session.AgentSession`, run in thread workers whose events come back to
the UI as messages.
"""
